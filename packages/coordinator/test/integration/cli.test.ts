import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sql } from 'kysely'
import t from 'tap'
import { openDatabase } from '../../src/db/database.js'
import { migrate } from '../../src/db/migrate.js'
import { ensurePgliteSeed } from '../../src/db/pglite-seed.js'
import { createLogger } from '../../src/logger.js'
import { TokenStore } from '../../src/tokens/token-store.js'
import { closedPort, runCli, spawnCli } from '../helpers/cli.js'
import { cliTarget, withDb } from '../helpers/cli-target.js'
import { join as joinPool } from '../helpers/provider-client.js'
import { OPERATOR_KEY, startTestService, waitFor } from '../helpers/service.js'

/*
 * coordinator-cli end to end, as a separate process: against a fresh PostgreSQL database when
 * TEST_DATABASE_URL is set (as in CI), else against an embedded data directory.
 */
const pgUrl = process.env.TEST_DATABASE_URL
const quiet = createLogger({ level: 'silent' })

t.test('migrate, issue-token, list-tokens, revoke-token: output and every exit code', async (t) => {
  const target = await cliTarget(t)
  const cli = (...args: string[]) => runCli(args, target.env)

  await ensurePgliteSeed() // what npm run build made; built here if this checkout was only type-checked
  const m1 = await cli('migrate')
  t.equal(m1.code, 0, m1.stderr)
  // An empty embedded data directory is created from the built seed, which holds every migration.
  t.match(m1.stdout, pgUrl ? /applied: 0001_provider_tokens/ : /^up to date$/m)
  const m2 = await cli('migrate', '--json')
  t.same(JSON.parse(m2.stdout), { applied: [], database: pgUrl ? 'postgres' : 'pglite' })

  const issued = await cli('issue-token', '--provider-id', 'mac-1', '--name', 'studio mac')
  t.equal(issued.code, 0, issued.stderr)
  const token = /token:\s+([0-9a-f]{64})/.exec(issued.stdout)?.[1] as string
  t.ok(token, 'the token is printed')
  t.equal(issued.stdout.split(token).length - 1, 1, 'exactly once')
  const again = await cli('issue-token', '--provider-id', 'mac-1')
  t.equal(again.code, 1, 'an active token exists')
  t.match(again.stderr, /an active token already exists/)
  const j = await cli('issue-token', '--provider-id', 'gpu-1', '--json')
  const jt = JSON.parse(j.stdout) as { token: string; token_prefix: string; origin: string }
  t.match(jt, { provider_id: 'gpu-1', origin: 'operator_issued', token: /^[0-9a-f]{64}$/ })

  const list = await cli('list-tokens')
  t.equal(list.code, 0)
  t.match(list.stdout, /prefix\s+provider_id\s+name\s+origin\s+created_at\s+last_used_at\s+expires_at\s+grace_until\s+revoked/)
  t.match(list.stdout, /mac-1\s+studio mac\s+operator_issued\s+\S+\s+-\s+never\s+-\s+no/)
  t.notOk(list.stdout.includes(token) || list.stdout.includes(jt.token), 'never a token')
  const listJson = JSON.parse((await cli('list-tokens', '--json')).stdout) as Array<Record<string, unknown>>
  t.equal(listJson.length, 2)
  for (const row of listJson) {
    t.same(Object.keys(row).sort(), [
      'created_at',
      'expires_at',
      'grace_until',
      'last_used_at',
      'name',
      'origin',
      'provider_id',
      'revoked',
      'revoked_at',
      'token_prefix',
    ])
    t.notOk(JSON.stringify(row).includes('hash'), 'never a hash')
  }

  t.equal((await cli('revoke-token', '--token-prefix', 'XYZ')).code, 2, 'a malformed prefix is a usage error')
  t.equal((await cli('revoke-token', '--token-prefix', 'abc')).code, 2, 'too short')
  const unknown = await cli('revoke-token', '--token-prefix', '000000000000')
  t.equal(unknown.code, 1)
  // Two active tokens sharing a 6-character prefix: make one collide with mac-1's on purpose.
  const shared = token.slice(0, 6)
  await withDb(target, (db) =>
    sql`INSERT INTO provider_tokens (token_hash, token_prefix, provider_id, provider_name, origin) VALUES (${randomBytes(32).toString('hex')}, ${`${shared}ffffff`}, 'other', 'other', 'operator_issued')`.execute(
      db.kysely,
    ),
  )
  const ambiguous = await cli('revoke-token', '--token-prefix', shared)
  t.equal(ambiguous.code, 1)
  t.match(ambiguous.stderr, /more than one active token/)
  const revoked = await cli('revoke-token', '--token-prefix', token.slice(0, 12), '--json')
  t.equal(revoked.code, 0, revoked.stderr)
  t.match(JSON.parse(revoked.stdout), { provider_id: 'mac-1', revoked: true })
  const active = JSON.parse((await cli('list-tokens', '--active', '--json')).stdout) as Array<{ provider_id: string }>
  t.same(active.map((r) => r.provider_id).sort(), ['gpu-1', 'other'])

  for (const [args, why] of [
    [['issue-token'], 'a required option is missing'],
    [['issue-token', '--provider-id', 'bad id'], 'an invalid provider_id'],
    [['frobnicate'], 'an unknown command'],
    [['list-tokens', '--colour'], 'an unknown option'],
  ] as const) {
    const r = await cli(...args)
    t.equal(r.code, 2, why)
    t.ok(r.stderr.length > 0, `${why}: says why`)
  }
  t.equal((await cli('--help')).code, 0)
  const version = await cli('--version')
  t.equal(version.code, 0)
  t.equal(version.stdout.trim(), (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version)
  const usageJson = await cli('revoke-token', '--json')
  t.equal(usageJson.code, 2)
  t.match(
    JSON.parse(usageJson.stdout),
    { error: { code: 'COORD_USAGE', message: /required option '--token-prefix <prefix>' not specified/ } },
    'a usage error is JSON too',
  )
})

t.test('prune-tokens: dry run by default, revokes (never deletes) with --apply, refuses under 24h', async (t) => {
  const target = await cliTarget(t)
  const cli = (...args: string[]) => runCli(args, target.env)
  t.equal((await cli('migrate')).code, 0)
  for (const id of ['old-unproven', 'new-unproven', 'old-proven']) t.equal((await cli('issue-token', '--provider-id', id)).code, 0)
  await withDb(target, async (db) => {
    const store = new TokenStore(db)
    await sql`UPDATE provider_tokens SET created_at = now() - interval '3 days' WHERE provider_id IN ('old-unproven', 'old-proven')`.execute(db.kysely)
    await sql`UPDATE provider_tokens SET last_used_at = now() WHERE provider_id = 'old-proven'`.execute(db.kysely)
    t.equal((await store.list()).length, 3)
  })
  t.equal((await cli('prune-tokens', '--older-than', '12h')).code, 2, 'under 24h is refused')
  t.equal((await cli('prune-tokens', '--older-than', 'soon')).code, 2)
  const dry = await cli('prune-tokens', '--older-than', '2d')
  t.equal(dry.code, 0)
  t.match(dry.stdout, /would revoke\s+[0-9a-f]{12}\s+old-unproven/)
  t.notMatch(dry.stdout, /new-unproven|old-proven/)
  t.equal(JSON.parse((await cli('list-tokens', '--active', '--json')).stdout).length, 3, 'a dry run changes nothing')
  const applied = JSON.parse((await cli('prune-tokens', '--older-than', '2d', '--apply', '--json')).stdout) as {
    applied: boolean
    tokens: Array<{ provider_id: string; revoked: boolean }>
  }
  t.same(
    applied.tokens.map((r) => [r.provider_id, r.revoked]),
    [['old-unproven', true]],
  )
  const all = JSON.parse((await cli('list-tokens', '--json')).stdout) as unknown[]
  t.equal(all.length, 3, 'revoked, not deleted')
})

t.test('through a running coordinator: pre-flip-audit, revoke-and-kick, cordon, status, and a wrong key changes nothing', async (t) => {
  const target = await cliTarget(t)
  const db = await target.open()
  await migrate(db)
  // The coordinator and the CLI share one database, as in a deployment; on PGlite the
  // coordinator holds it, and the CLI reaches it only through the admin API.
  const s = await startTestService(t, { db })
  const env = { ...target.env, COORD_PORT: new URL(s.url).port }
  const cli = (...args: string[]) => runCli(args, env)

  // An unproven token, and a live tokenless session: both would be locked out.
  const issuedRun = await cli('issue-token', '--provider-id', 'invitee', '--json')
  t.equal(issuedRun.stderr, '', 'no fallback note: the coordinator answered')
  const issued = JSON.parse(issuedRun.stdout) as { token: string; token_prefix: string }
  const walkIn = await joinPool(s.wsUrl, 'walk-in')
  t.equal(walkIn.ack?.auth_state, 'self_minted')
  const unsafe = await cli('pre-flip-audit')
  t.equal(unsafe.code, 1, 'not safe')
  t.match(unsafe.stdout, /NOT SAFE\s+unproven_token\s+invitee/)
  t.match(unsafe.stdout, /NOT SAFE\s+self_minted_session\s+walk-in/)
  const unsafeJson = JSON.parse((await cli('pre-flip-audit', '--json')).stdout) as { safe: boolean; poolz_checked: boolean; offenders: unknown[] }
  t.match(unsafeJson, { safe: false, poolz_checked: true })
  t.equal(unsafeJson.offenders.length, 3, "the invitee's unproven token, the walk-in's unproven token, the walk-in's session")

  // The invitee proves its token; the walk-in leaves and its token is revoked. Now it is safe.
  t.ok(await s.svc.ctx.tokens.validateAndMarkUsed(issued.token))
  await walkIn.client.close()
  await waitFor(() => s.svc.ctx.registry.size === 0, 'the walk-in is gone')
  const walkInToken = (JSON.parse((await cli('list-tokens', '--active', '--json')).stdout) as Array<{ provider_id: string; token_prefix: string }>).find(
    (r) => r.provider_id === 'walk-in',
  )
  t.equal((await cli('revoke-token', '--token-prefix', walkInToken?.token_prefix ?? '')).code, 0)
  const safe = await cli('pre-flip-audit', '--max-last-used-age', '1h')
  t.equal(safe.code, 0, safe.stdout + safe.stderr)
  t.match(safe.stdout, /^safe: 1 active token, all proven within 1h; 0 live sessions/m)
  t.equal((await cli('pre-flip-audit', '--max-last-used-age', 'forever')).code, 2)

  // status: the pool as a table; cordon keeps a connected provider out of routing.
  const invitee = await joinPool(s.wsUrl, 'invitee', { token: issued.token })
  t.equal(invitee.ack?.auth_state, 'bearer_validated')
  const status = await cli('status')
  t.equal(status.code, 0, status.stderr)
  t.match(status.stdout, /provider_id\s+auth_state\s+routable\s+status\s+slots\s+models\s+connected_at/)
  t.match(status.stdout, /invitee\s+bearer_validated\s+yes\s+ready\s+0\/2/)
  t.match(status.stdout, /^1 provider, 1 routable/m)
  const cordoned = JSON.parse((await cli('cordon', '--provider-id', 'invitee', '--reason', 'bad answers', '--json')).stdout)
  t.same(cordoned, { provider_id: 'invitee', cordoned: true, live: true })
  t.match((await s.poolz()).pool[0], { provider_id: 'invitee', routing_eligible: false, routing_ineligible_reason: 'cordoned', cordoned: true })
  t.match((await cli('status')).stdout, /invitee\s+bearer_validated\s+no \(cordoned\)/)
  t.match(JSON.parse((await cli('list-cordons', '--json')).stdout), [{ provider_id: 'invitee', reason: 'bad answers' }])
  t.same(JSON.parse((await cli('uncordon', '--provider-id', 'invitee', '--json')).stdout), { provider_id: 'invitee', cordoned: false, live: true })
  t.equal((await s.poolz()).pool[0]?.routing_eligible, true)

  // A wrong key: the coordinator cannot prove it holds the CLI's key, so the CLI never sends it
  // and nothing happens (the old CLI revoked first and only then found the kick refused).
  const wrong = { ...env, COORD_OPERATOR_KEY: 'wrong-key-wrong-key-wrong' }
  const badKey = await runCli(['revoke-and-kick', '--token-prefix', issued.token_prefix], wrong)
  t.equal(badKey.code, 1)
  t.match(badKey.stderr, /cannot prove it holds this operator key, so the key was not sent/)
  t.match(
    (await s.svc.ctx.tokens.list({ activeOnly: true })).map((r) => r.providerId),
    ['invitee'],
    'nothing was revoked',
  )
  const badKeyJson = await runCli(['pre-flip-audit', '--json'], wrong)
  t.match(JSON.parse(badKeyJson.stdout), { error: { code: 'COORD_UNVERIFIED' } }, '--json errors are JSON')

  // revoke-and-kick: one request; the token is revoked and the live session closed at once.
  const rk = await cli('revoke-and-kick', '--token-prefix', issued.token_prefix, '--json')
  t.equal(rk.code, 0, rk.stderr)
  t.match(JSON.parse(rk.stdout), { provider_id: 'invitee', revoked: true, kicked: true })
  t.same(await invitee.client.closed, { code: 4007, reason: 'kicked' })
  const issued2 = JSON.parse((await cli('issue-token', '--provider-id', 'nobody-home', '--json')).stdout) as { token_prefix: string }
  const none = await cli('revoke-and-kick', '--token-prefix', issued2.token_prefix)
  t.equal(none.code, 0)
  t.match(none.stdout, /nobody-home had no live session/)

  // With no coordinator at the URL, the CLI says so and works on the database, where it can.
  const issued3 = JSON.parse((await cli('issue-token', '--provider-id', 'far-away', '--json')).stdout) as { token_prefix: string }
  const nobody = await closedPort()
  const elsewhere = { ...env, COORD_PORT: nobody }
  // Real processes: on PGlite the lock names this test's process, which an in-process run shares.
  const audit = await spawnCli(['pre-flip-audit'], elsewhere)
  t.equal(audit.code, 1, 'without the live sessions the audit cannot say safe')
  t.match(audit.stderr, `no coordinator answered at http://127.0.0.1:${nobody}; working on the database directly`)
  const down = await spawnCli(['revoke-and-kick', '--token-prefix', issued3.token_prefix, '--json'], elsewhere)
  const noStatus = await spawnCli(['status'], elsewhere)
  t.equal(noStatus.code, 1)
  t.match(noStatus.stderr, `needs a running coordinator, and none answered at http://127.0.0.1:${nobody}`)
  if (pgUrl !== undefined) {
    t.match(audit.stdout, /cannot tell: no coordinator answered/)
    t.equal(down.code, 0, down.stdout + down.stderr)
    t.match(JSON.parse(down.stdout), { provider_id: 'far-away', revoked: true, kicked: false })
  } else {
    // The embedded database belongs to the running coordinator: the direct path is refused.
    t.match(audit.stderr, /in use by process/)
    t.equal(down.code, 1)
    t.match(JSON.parse(down.stdout), { error: { code: 'COORD_DB_LOCKED' } })
  }
})

t.test('the embedded database is never opened by two processes at once', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'poolcoord-lock-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const db = await openDatabase({ url: null, dataDir, log: quiet })
  const locked = await spawnCli(['list-tokens'], { COORD_DATA_DIR: dataDir, COORD_OPERATOR_KEY: OPERATOR_KEY })
  t.equal(locked.code, 1)
  t.match(locked.stderr, new RegExp(`in use by process ${process.pid}`))
  await db.close()
  const after = await spawnCli(['list-tokens', '--json'], { COORD_DATA_DIR: dataDir, COORD_OPERATOR_KEY: OPERATOR_KEY })
  t.equal(after.code, 0, after.stderr)
  t.same(JSON.parse(after.stdout), [], 'the real executable prints JSON and exits 0')
  const usage = await spawnCli(['revoke-token'], { COORD_DATA_DIR: dataDir, COORD_OPERATOR_KEY: OPERATOR_KEY })
  t.equal(usage.code, 2, 'and exits 2 on a usage error')
  t.match(usage.stderr, /required option '--token-prefix <prefix>' not specified/)
})
