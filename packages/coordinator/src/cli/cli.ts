import { Command, CommanderError, Option } from 'commander'
import { envToConfig, readEnv, type Config } from '../config.js'
import { openDatabase, type Database } from '../db/database.js'
import { migrate } from '../db/migrate.js'
import { CoordinatorError, InvalidProviderIdError, TokenPrefixInvalidError } from '../errors.js'
import { createLogger } from '../logger.js'
import { readOperatorKeyFile } from '../operator-key.js'
import { PROVIDER_ID_RE, TOKEN_PREFIX_RE } from '@poolcoord/protocol'
import { TokenStore, type TokenInfo } from '../tokens/token-store.js'
import { auditFlip } from './audit.js'
import { CliFailure, CoordinatorClient } from './coordinator-client.js'
import { parseDuration } from './duration.js'

/**
 * coordinator-cli: token and pool administration (specs/cli.md). Works on DATABASE_URL or the
 * embedded data dir, with or without a running coordinator. Exit codes: 0 ok, 1 the condition
 * failed, 2 usage error.
 */
const PRUNE_MIN_MS = 24 * 3_600_000

/** Where the CLI writes: the process's streams, or a test's buffers. */
export interface CliIo {
  out(s: string): void
  err(s: string): void
}

function program(config: Config, io: CliIo, status: { code: number }): Command {
  const out = io.out
  const log = createLogger({ level: 'warn', destination: { write: (s: string) => io.err(s) } })
  const withStore = async <T>(fn: (store: TokenStore, db: Database) => Promise<T>): Promise<T> => {
    const db = await openDatabase({ url: config.databaseUrl, dataDir: config.dataDir, log })
    try {
      await migrate(db)
      return await fn(new TokenStore(db, { timeoutMs: config.limits.storeTimeoutMs }), db)
    } finally {
      await db.close()
    }
  }
  const coordinator = (url: string | undefined) =>
    new CoordinatorClient(url ?? defaultCoordinatorUrl(config), config.operatorKey ?? readOperatorKeyFile(config.dataDir))
  const json = new Option('--json', 'machine-readable output')

  const cli = new Command('coordinator-cli')
    .description('poolcoord token and pool administration')
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s.replace(/\n$/, '')), writeErr: (s) => io.err(s) })

  cli
    .command('migrate')
    .description('apply the SQL migrations')
    .addOption(json)
    .action(async (o: { json?: boolean }) => {
      const db = await openDatabase({ url: config.databaseUrl, dataDir: config.dataDir, log })
      try {
        const { applied } = await migrate(db)
        if (o.json) out(JSON.stringify({ applied, database: db.kind }))
        else out(applied.length ? `applied: ${applied.join(', ')}` : 'up to date')
      } finally {
        await db.close()
      }
    })

  cli
    .command('issue-token')
    .description('issue an operator_issued token for a provider; it is printed exactly once')
    .requiredOption('--provider-id <id>', 'the provider_id the token is bound to')
    .option('--name <name>', 'a label for the token', '')
    .addOption(json)
    .action(async (o: { providerId: string; name: string; json?: boolean }) => {
      if (!PROVIDER_ID_RE.test(o.providerId)) throw new InvalidProviderIdError()
      const name = o.name === '' ? o.providerId : o.name.slice(0, 253)
      const issued = await withStore((store) => store.issue(o.providerId, name, 'operator_issued'))
      if (o.json) {
        out(JSON.stringify({ token: issued.token, token_prefix: issued.tokenPrefix, provider_id: issued.providerId, name, origin: 'operator_issued' }))
      } else {
        out(`token:       ${issued.token}`)
        out(`prefix:      ${issued.tokenPrefix}`)
        out(`provider_id: ${issued.providerId}`)
        out('This is the only time the token is shown. The provider sends it as "Authorization: Bearer <token>".')
      }
    })

  cli
    .command('list-tokens')
    .description('list tokens: prefix, provider, name, origin, dates; never a token or hash')
    .option('--active', 'only tokens that are not revoked')
    .addOption(json)
    .action(async (o: { active?: boolean; json?: boolean }) => {
      const tokens = await withStore((store) => store.list({ activeOnly: o.active === true }))
      if (o.json) return out(JSON.stringify(tokens.map(tokenJson)))
      printTable(
        out,
        ['prefix', 'provider_id', 'name', 'origin', 'created_at', 'last_used_at', 'revoked'],
        tokens.map((tk) => [
          tk.tokenPrefix,
          tk.providerId,
          tk.providerName,
          tk.origin,
          iso(tk.createdAt),
          iso(tk.lastUsedAt) || '-',
          tk.revokedAt ? iso(tk.revokedAt) : 'no',
        ]),
      )
    })

  const revoke = async (prefix: string): Promise<TokenInfo> => {
    // Checked before opening the database, so a typo is a usage error with no side effects.
    if (!TOKEN_PREFIX_RE.test(prefix)) throw new TokenPrefixInvalidError()
    return withStore((store) => store.revokeByPrefix(prefix))
  }

  cli
    .command('revoke-token')
    .description('revoke the one active token with this prefix (6-12 hex characters)')
    .requiredOption('--token-prefix <prefix>', 'the token prefix, as list-tokens shows it')
    .addOption(json)
    .action(async (o: { tokenPrefix: string; json?: boolean }) => {
      const tk = await revoke(o.tokenPrefix)
      if (o.json) out(JSON.stringify(tokenJson(tk)))
      else out(`revoked ${tk.tokenPrefix} (provider_id ${tk.providerId}). A live session keeps running until it reconnects; use revoke-and-kick to end it now.`)
    })

  cli
    .command('revoke-and-kick')
    .description('revoke the token, then close the live session of its provider on the coordinator')
    .requiredOption('--token-prefix <prefix>', 'the token prefix')
    .option('--coordinator <url>', 'the coordinator base URL (default from COORD_HOST/COORD_PORT)')
    .addOption(json)
    .action(async (o: { tokenPrefix: string; coordinator?: string; json?: boolean }) => {
      const tk = await revoke(o.tokenPrefix)
      let kicked: boolean
      try {
        kicked = await coordinator(o.coordinator).kick(tk.providerId)
      } catch (err) {
        throw new CliFailure(`revoked ${tk.tokenPrefix}, but the kick failed: ${(err as Error).message}. The live session, if any, ends at its next reconnect.`)
      }
      if (o.json) out(JSON.stringify({ ...tokenJson(tk), kicked }))
      else out(`revoked ${tk.tokenPrefix}; ${kicked ? `closed the live session of ${tk.providerId}` : `${tk.providerId} had no live session`}`)
    })

  cli
    .command('pre-flip-audit')
    .description('exit 0 only when turning require_provider_tokens on would lock no provider out')
    .option('--max-last-used-age <duration>', 'a token unused for longer is stale (e.g. 24h, 7d)', '24h')
    .option('--coordinator <url>', 'the coordinator base URL for /poolz (default from COORD_HOST/COORD_PORT)')
    .addOption(json)
    .action(async (o: { maxLastUsedAge: string; coordinator?: string; json?: boolean }) => {
      const maxAge = parseDuration(o.maxLastUsedAge)
      if (maxAge === null) throw new CliFailure('--max-last-used-age must look like 30m, 24h or 7d', 2)
      const tokens = await withStore((store) => store.list({ activeOnly: true }))
      const sessions = await coordinator(o.coordinator).poolz()
      const offenders = auditFlip(tokens, sessions, new Date(), maxAge)
      const safe = offenders.length === 0
      if (o.json) {
        out(JSON.stringify({ safe, poolz_checked: sessions !== null, offenders }))
      } else {
        if (sessions === null) out('note: the coordinator was not reachable; live sessions were not checked')
        if (safe)
          out(
            `safe: ${tokens.length} active tokens, all proven within ${o.maxLastUsedAge}${sessions ? `; ${sessions.length} live sessions, all bearer_validated` : ''}`,
          )
        for (const f of offenders) out(`NOT SAFE  ${f.reason.padEnd(28)} ${f.provider_id}  ${f.token_prefix ?? ''}  ${f.detail}`)
      }
      if (!safe) status.code = 1
    })

  cli
    .command('prune-tokens')
    .description('revoke (never delete) unproven tokens older than a duration; a dry run unless --apply')
    .requiredOption('--older-than <duration>', 'at least 24h (e.g. 48h, 7d)')
    .option('--apply', 'revoke them; without it, only list them')
    .addOption(json)
    .action(async (o: { olderThan: string; apply?: boolean; json?: boolean }) => {
      const age = parseDuration(o.olderThan)
      if (age === null) throw new CliFailure('--older-than must look like 48h or 7d', 2)
      if (age < PRUNE_MIN_MS) throw new CliFailure('--older-than must be at least 24h: younger unproven tokens may belong to providers still starting', 2)
      const rows = await withStore((store) => store.pruneUnproven(age, o.apply === true))
      if (o.json) return out(JSON.stringify({ applied: o.apply === true, tokens: rows.map(tokenJson) }))
      for (const tk of rows) out(`${o.apply ? 'revoked' : 'would revoke'}  ${tk.tokenPrefix}  ${tk.providerId}  created ${iso(tk.createdAt)}`)
      out(`${rows.length} unproven token(s) older than ${o.olderThan}${o.apply ? ' revoked' : '; run again with --apply to revoke them'}`)
    })
  return cli
}

function tokenJson(tk: TokenInfo) {
  return {
    token_prefix: tk.tokenPrefix,
    provider_id: tk.providerId,
    name: tk.providerName,
    origin: tk.origin,
    created_at: iso(tk.createdAt),
    last_used_at: iso(tk.lastUsedAt),
    revoked: tk.revokedAt !== null,
    revoked_at: iso(tk.revokedAt),
  }
}

function iso(d: Date | null): string | null {
  return d === null ? null : d.toISOString()
}

function printTable(out: (s: string) => void, head: string[], rows: Array<Array<string | null>>): void {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  for (const r of [head, ...rows])
    out(
      r
        .map((c, i) => (c ?? '').padEnd(widths[i] as number))
        .join('  ')
        .trimEnd(),
    )
}

function defaultCoordinatorUrl(config: Config): string {
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host
  return `http://${host.includes(':') ? `[${host}]` : host}:${config.port}`
}

/** Runs one CLI invocation; returns the exit code. `argv` excludes node and the script. */
export async function runCli(args: string[], env: NodeJS.ProcessEnv | undefined, io: CliIo): Promise<number> {
  let config: Config
  try {
    config = envToConfig(readEnv(env))
  } catch (err) {
    io.err(`error: ${(err as Error).message}\n`)
    return 2
  }
  const status = { code: 0 }
  try {
    await program(config, io, status).parseAsync(args, { from: 'user' })
    return status.code
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2
    if (err instanceof CliFailure) {
      io.err(`error: ${err.message}\n`)
      return err.exitCode
    }
    if (err instanceof InvalidProviderIdError || err instanceof TokenPrefixInvalidError) {
      io.err(`error: ${err.message}\n`)
      return 2
    }
    // Operators run this locally: the cause's code (an SQLSTATE, ECONNREFUSED) says what to fix.
    const cause = (err as { cause?: { code?: unknown } }).cause?.code
    const message = err instanceof CoordinatorError ? err.message : 'unexpected failure'
    io.err(`error: ${message}${typeof cause === 'string' ? ` (${cause})` : ''}\n`)
    return 1
  }
}
