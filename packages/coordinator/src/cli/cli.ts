import { Command, CommanderError, Option } from 'commander'
import { PROVIDER_ID_RE, TOKEN_PREFIX_RE, type PoolzResponse } from '@poolcoord/protocol'
import { envToConfig, readEnv, type Config } from '../config.js'
import { VERSION } from '../version.js'
import { openDatabase } from '../db/database.js'
import { migrate } from '../db/migrate.js'
import { CoordinatorError } from '../errors.js'
import { createLogger } from '../logger.js'
import { readOperatorKeyFile } from '../operator-key.js'
import type { Common } from './command-kit.js'
import { openDatabaseOperatorApi } from './database-operator-api.js'
import { parseDuration } from './duration.js'
import { HttpOperatorApi, probeCoordinator } from './http-operator-api.js'
import { addIdentityCommands } from './identity-commands.js'
import { CliFailure, type OperatorApi } from './operator-api.js'
import { plural, printTable } from './print.js'

/**
 * coordinator-cli: token, identity, cordon and pool administration (specs/cli.md). It talks to the
 * running coordinator's admin API; only when no coordinator answers does it work on the
 * database directly, and it says so. Exit codes: 0 ok, 1 the condition failed, 2 usage error.
 */

/** Where the CLI writes: the process's streams, or a test's buffers. */
export interface CliIo {
  out(s: string): void
  err(s: string): void
}

function program(config: Config, io: CliIo, status: { code: number }): Command {
  const out = io.out
  const log = createLogger({ level: 'warn', format: 'json', destination: { write: (s: string) => io.err(s) } })
  /** The admin API if a coordinator answers, else the database, said on stderr. */
  const withApi = async <T>(o: Common, fn: (api: OperatorApi) => Promise<T>): Promise<T> => {
    const url = (o.url ?? cli.opts<{ url?: string }>().url ?? defaultCoordinatorUrl(config)).replace(/\/+$/, '')
    let api: OperatorApi
    const key = config.operatorKey ?? readOperatorKeyFile(config.dataDir)
    if ((await probeCoordinator(url, key)).kind === 'coordinator') {
      api = new HttpOperatorApi(url, key as string)
    } else {
      io.err(`note: no coordinator answered at ${url}; working on the database directly\n`)
      api = openDatabaseOperatorApi(config, log, url)
    }
    try {
      return await fn(api)
    } finally {
      await api.close()
    }
  }
  const json = new Option('--json', 'one JSON document on stdout, errors included')
  const url = new Option('--coordinator <url>', 'alias of --url').hideHelp()

  const cli = new Command('coordinator-cli')
    .description('poolcoord token, identity, cordon and pool administration')
    .version(VERSION, '-V, --version')
    .option('--url <url>', 'the coordinator base URL (default http://COORD_HOST:COORD_PORT)')
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s.replace(/\n$/, '')), writeErr: (s) => io.err(s) })

  const command = (name: string, description: string) => cli.command(name).description(description).addOption(json).addOption(url)
  const urlOf = (o: Common & { coordinator?: string }): Common => ({ json: o.json, url: o.url ?? o.coordinator })
  /** Checked before any request: an id like `..` would be folded out of the URL path. */
  const id = (providerId: string): string => {
    if (!PROVIDER_ID_RE.test(providerId))
      throw new CliFailure('provider_id must be 1-64 characters of [A-Za-z0-9_.-], not dots alone', 2, 'COORD_PROVIDER_ID_INVALID')
    return providerId
  }
  const prefix = (p: string): string => {
    if (!TOKEN_PREFIX_RE.test(p)) throw new CliFailure('token prefix must be 6 to 12 lowercase hex characters', 2, 'COORD_TOKEN_PREFIX_INVALID')
    return p
  }

  cli
    .command('migrate')
    .description('apply the SQL migrations to the database (the coordinator also does this at start)')
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

  command('status', 'the live pool as a table, and its summary').action(async (o: Common) => {
    const pool = await withApi(urlOf(o), (api) => api.pool())
    if (o.json) return out(JSON.stringify(pool))
    printPool(out, pool)
  })

  command('issue-token', 'issue an operator_issued token for a provider; it is printed exactly once')
    .requiredOption('--provider-id <id>', 'the provider_id the token is bound to')
    .option('--name <name>', 'a label for the token', '')
    .action(async (o: Common & { providerId: string; name: string }) => {
      const providerId = id(o.providerId)
      const issued = await withApi(urlOf(o), (api) => api.issueToken(providerId, o.name))
      if (o.json) return out(JSON.stringify(issued))
      out(`token:       ${issued.token}`)
      out(`prefix:      ${issued.token_prefix}`)
      out(`provider_id: ${issued.provider_id}`)
      out('This is the only time the token is shown. The provider sends it as "Authorization: Bearer <token>".')
    })

  command('list-tokens', 'list tokens: prefix, provider, name, origin, dates, expiry and grace; never a token or hash')
    .option('--active', 'only tokens that are not revoked')
    .action(async (o: Common & { active?: boolean }) => {
      const tokens = await withApi(urlOf(o), (api) => api.listTokens(o.active === true))
      if (o.json) return out(JSON.stringify(tokens))
      printTable(
        out,
        ['prefix', 'provider_id', 'name', 'origin', 'created_at', 'last_used_at', 'expires_at', 'grace_until', 'revoked'],
        tokens.map((tk) => [
          tk.token_prefix,
          tk.provider_id,
          tk.name,
          tk.origin,
          tk.created_at,
          tk.last_used_at ?? '-',
          tk.expires_at ?? 'never',
          tk.grace_until ?? '-',
          tk.revoked_at ?? 'no',
        ]),
      )
    })

  command('revoke-token', 'revoke the one active token with this prefix (6-12 hex characters)')
    .requiredOption('--token-prefix <prefix>', 'the token prefix, as list-tokens shows it')
    .action(async (o: Common & { tokenPrefix: string }) => {
      const p = prefix(o.tokenPrefix)
      const tk = await withApi(urlOf(o), (api) => api.revokeToken(p, false))
      if (o.json) return out(JSON.stringify(tk))
      out(
        `revoked ${tk.token_prefix} (provider_id ${tk.provider_id}). ` +
          (tk.kicked === true
            ? 'The session this token admitted was closed now; its reconnect with this token is refused. '
            : tk.kicked === null
              ? 'No coordinator answered, so no live session was closed; a provider still running with this token is refused at its next connect. '
              : 'No live session was running on this token. ') +
          `If ${tk.provider_id} has a pinned identity key (list-identities), the provider holding that key recovers by itself with a new token, ` +
          'and whoever holds only this token cannot: the right answer to a leaked token. ' +
          `To block the id entirely, key included: revoke-identity --provider-id ${tk.provider_id}.`,
      )
    })

  command('revoke-and-kick', 'revoke the token and close the live session of its provider, in one operation on the coordinator')
    .requiredOption('--token-prefix <prefix>', 'the token prefix')
    .action(async (o: Common & { tokenPrefix: string }) => {
      const p = prefix(o.tokenPrefix)
      const tk = await withApi(urlOf(o), (api) => api.revokeToken(p, true))
      if (o.json) return out(JSON.stringify(tk))
      out(`revoked ${tk.token_prefix}; ${tk.kicked ? `closed the live session of ${tk.provider_id}` : `${tk.provider_id} had no live session`}`)
    })

  command('pre-flip-audit', 'exit 0 only when turning require_provider_tokens on would lock no provider out')
    .option('--max-last-used-age <duration>', 'a token unused for longer is stale (e.g. 24h, 7d)', '24h')
    .action(async (o: Common & { maxLastUsedAge: string }) => {
      const maxAge = parseDuration(o.maxLastUsedAge)
      if (maxAge === null) throw new CliFailure('--max-last-used-age must look like 30m, 24h or 7d', 2, 'COORD_BAD_REQUEST')
      const audit = await withApi(urlOf(o), (api) => api.audit(Math.ceil(maxAge / 1000)))
      if (!audit.safe) status.code = 1
      if (o.json) return out(JSON.stringify(audit))
      const tokens = plural(audit.active_tokens, 'active token')
      if (!audit.poolz_checked) {
        out(`cannot tell: no coordinator answered, so live sessions were not checked (${tokens}${audit.offenders.length ? '' : ', all proven'})`)
      } else if (audit.safe) {
        out(`safe: ${tokens}, all proven within ${o.maxLastUsedAge}; ${plural(audit.live_sessions ?? 0, 'live session')}, all bearer_validated`)
      }
      for (const f of audit.offenders) out(`NOT SAFE  ${f.reason.padEnd(28)} ${f.provider_id}  ${f.token_prefix ?? ''}  ${f.detail}`)
    })

  command('prune-tokens', 'revoke (never delete) unproven tokens older than a duration; a dry run unless --apply')
    .requiredOption('--older-than <duration>', 'at least 24h (e.g. 48h, 7d)')
    .option('--apply', 'revoke them; without it, only list them')
    .action(async (o: Common & { olderThan: string; apply?: boolean }) => {
      const age = parseDuration(o.olderThan)
      if (age === null) throw new CliFailure('--older-than must look like 48h or 7d', 2, 'COORD_BAD_REQUEST')
      const pruned = await withApi(urlOf(o), (api) => api.pruneTokens(Math.ceil(age / 1000), o.apply === true))
      if (o.json) return out(JSON.stringify(pruned))
      for (const tk of pruned.tokens) out(`${o.apply ? 'revoked' : 'would revoke'}  ${tk.token_prefix}  ${tk.provider_id}  created ${tk.created_at}`)
      out(`${plural(pruned.tokens.length, 'unproven token')} older than ${o.olderThan}${o.apply ? ' revoked' : '; run again with --apply to revoke them'}`)
    })

  command('cordon', 'keep a provider out of routing (it stays connected) until uncordon; survives reconnects and restarts')
    .requiredOption('--provider-id <id>', 'the provider_id')
    .option('--reason <text>', 'why, for the other operators', '')
    .action(async (o: Common & { providerId: string; reason: string }) => {
      const providerId = id(o.providerId)
      const r = await withApi(urlOf(o), (api) => api.cordon(providerId, o.reason))
      if (o.json) return out(JSON.stringify(r))
      out(`cordoned ${r.provider_id}${r.live ? '; its live session takes no new requests' : ' (not connected now)'}`)
    })

  command('uncordon', 'let a cordoned provider be routed again')
    .requiredOption('--provider-id <id>', 'the provider_id')
    .action(async (o: Common & { providerId: string }) => {
      const providerId = id(o.providerId)
      const r = await withApi(urlOf(o), (api) => api.uncordon(providerId))
      if (o.json) return out(JSON.stringify(r))
      out(`uncordoned ${r.provider_id}${r.live ? '; its live session is routable again' : ''}`)
    })

  addIdentityCommands({ command, withApi, urlOf, id, out })

  command('list-cordons', 'cordoned provider ids, with reason and time').action(async (o: Common) => {
    const cordons = await withApi(urlOf(o), (api) => api.listCordons())
    if (o.json) return out(JSON.stringify(cordons))
    printTable(
      out,
      ['provider_id', 'since', 'reason'],
      cordons.map((c) => [c.provider_id, c.created_at, c.reason]),
    )
  })
  return cli
}

function printPool(out: (s: string) => void, pool: PoolzResponse): void {
  printTable(
    out,
    ['provider_id', 'auth_state', 'routable', 'status', 'slots', 'models', 'connected_at'],
    pool.pool.map((r) => [
      r.provider_id,
      r.auth_state,
      r.routing_eligible ? 'yes' : `no (${r.routing_ineligible_reason})`,
      r.status,
      `${r.in_flight}/${r.max_concurrency}`,
      r.models.join(','),
      r.connected_at,
    ]),
  )
  const s = pool.summary
  out(
    `${plural(s.total, 'provider')}, ${s.routable} routable; ${s.slots.in_flight} requests in flight; models: ${s.models.map((m) => `${m.id} (${m.routable})`).join(', ') || 'none'}`,
  )
}

function defaultCoordinatorUrl(config: Config): string {
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host
  return `http://${host.includes(':') ? `[${host}]` : host}:${config.port}`
}

/** Runs one CLI invocation; returns the exit code. `args` excludes node and the script. */
export async function runCli(args: string[], env: NodeJS.ProcessEnv | undefined, io: CliIo): Promise<number> {
  const asJson = args.includes('--json')
  // With --json, an error is one JSON document on stdout too, so scripts parse one thing.
  const fail = (code: string, message: string, exit: number): number => {
    if (asJson) io.out(JSON.stringify({ error: { code, message } }))
    else io.err(`error: ${message}\n`)
    return exit
  }
  let config: Config
  try {
    config = envToConfig(readEnv(env))
  } catch (err) {
    return fail('COORD_CONFIG_INVALID', (err as Error).message, 2)
  }
  const status = { code: 0 }
  try {
    await program(config, io, status).parseAsync(args, { from: 'user' })
    return status.code
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.exitCode === 0) return 0
      return asJson ? fail('COORD_USAGE', err.message.replace(/^error: /, ''), 2) : 2
    }
    if (err instanceof CliFailure) return fail(err.code, err.message, err.exitCode)
    if (err instanceof CoordinatorError) {
      const usage = ['COORD_PROVIDER_ID_INVALID', 'COORD_TOKEN_PREFIX_INVALID', 'COORD_BAD_REQUEST'].includes(err.code)
      // Operators run this locally: the cause's code (an SQLSTATE, ECONNREFUSED) says what to fix.
      const cause = (err as { cause?: { code?: unknown } }).cause?.code
      return fail(err.code, `${err.message}${typeof cause === 'string' ? ` (${cause})` : ''}`, usage ? 2 : 1)
    }
    return fail('COORD_INTERNAL', 'unexpected failure', 1)
  }
}
