import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import { tmpdir } from 'node:os'
import { join as joinPath } from 'node:path'
import t from 'tap'
import { parseHelloAck } from '@poolcoord/protocol'
import { explainStartupFailure } from '../../src/startup-error.js'
import { buyer } from '../helpers/buyer.js'
import { spawnCoordinator } from '../helpers/child-coordinator.js'
import { closedPort, runCli } from '../helpers/cli.js'
import { join } from '../helpers/provider-client.js'
import { OPERATOR_KEY, startTestService, waitFor, type TestService } from '../helpers/service.js'
import { TestProvider, answer } from '../helpers/test-provider.js'

/*
 * Attacks found by an adversarial review of the admin API, the CLI, cordon and start-up, kept as
 * tests: each failed on the code as first written, and states what the specs require.
 */

const messages = [{ role: 'user' as const, content: 'hi' }]
const auth = { authorization: `Bearer ${OPERATOR_KEY}` }

function admin(s: TestService, method: 'GET' | 'POST', path: string, body?: unknown) {
  return fetch(`${s.url}${path}`, {
    method,
    headers: { ...auth, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
}

t.test('A1: ids of dots alone are refused: URL parsers fold them, so such a provider could not be cordoned, drained or kicked', async (t) => {
  const s = await startTestService(t)
  for (const id of ['.', '..', '...']) {
    const r = await join(s.wsUrl, id)
    t.same(r.close, { code: 4001, reason: 'invalid_hello: provider_id' }, `hello as ${JSON.stringify(id)}`)
  }
  // What the dashboard and the CLI send for such an id never reaches the provider's route.
  t.equal((await admin(s, 'POST', `/admin/providers/${encodeURIComponent('..')}/cordon`, {})).status, 404)
  const cli = await runCli(['cordon', '--provider-id', '..', '--url', s.url], { COORD_OPERATOR_KEY: OPERATOR_KEY, COORD_DATA_DIR: '/nonexistent' })
  t.equal(cli.code, 2, 'the CLI refuses the id as a usage error')
  t.equal((await s.poolz()).summary.total, 0)
  t.ok(await join(s.wsUrl, 'a..b').then((r) => r.ack), 'dots inside an id are still fine')
})

t.test('A2: with a coordinator running, a TLS error or a malformed --url is an error, never a fallback to the database', async (t) => {
  const s = await startTestService(t)
  const p = await TestProvider.join(s.wsUrl, 'gpu-a', { handler: answer() })
  const port = new URL(s.url).port
  const dataDir = mkdtempSync(joinPath(tmpdir(), 'poolcoord-review-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const env = { COORD_OPERATOR_KEY: OPERATOR_KEY, COORD_DATA_DIR: dataDir }
  for (const [u, exit] of [
    [`https://127.0.0.1:${port}`, 1],
    [`localhost:${port}`, 2],
  ] as const) {
    const r = await runCli(['cordon', '--provider-id', 'gpu-a', '--url', u], env)
    t.equal(r.code, exit, `--url ${u}: exit ${exit}`)
    t.notMatch(r.stderr, /working on the database directly/, `--url ${u}: no database fallback`)
  }
  t.match(await (await admin(s, 'GET', '/admin/cordons')).json(), { cordons: [] }, 'nothing was cordoned anywhere')
  await buyer(s.url).chat.completions.create({ model: 'test-model', messages })
  t.equal(p.requests.length, 1, 'the provider still serves')
})

t.test('A3: a cordon whose store call timed out: the provider stays out while unknown, and memory follows the store once it answers', async (t) => {
  const s = await startTestService(t, { limits: { storeTimeoutMs: 300 } })
  const p = await TestProvider.join(s.wsUrl, 'gpu-b', { handler: answer() })
  await TestProvider.join(s.wsUrl, 'gpu-c', { handler: answer() })
  // Hold the store: on PostgreSQL a lock on the table, on PGlite its single connection.
  let release = (): void => undefined
  const held = new Promise<void>((r) => (release = r))
  const blocker = s.svc.ctx.db.rawTransaction(async (tx) => {
    if (s.svc.ctx.db.kind === 'postgres') await tx.exec('LOCK TABLE provider_cordons IN EXCLUSIVE MODE')
    await held
  })
  const res = await admin(s, 'POST', '/admin/providers/gpu-b/cordon', { reason: 'bad answers' })
  t.equal(res.status, 503, 'the operator is told the store failed')
  t.match(
    (await s.poolz()).pool.find((r) => r.provider_id === 'gpu-b'),
    { cordoned: true },
    'while the outcome is unknown, the provider stays out',
  )
  release()
  await blocker
  // The blocked INSERT commits late; the coordinator reads the store back and agrees with it.
  await waitFor(async () => {
    const listed = (await (await admin(s, 'GET', '/admin/cordons')).json()) as { cordons: Array<{ provider_id: string }> }
    const live = (await s.poolz()).pool.find((r) => r.provider_id === 'gpu-b')
    return listed.cordons.some((c) => c.provider_id === 'gpu-b') === live?.cordoned
  }, 'the store and the live pool to agree')
  // Both stores held the INSERT, not cancelled it: it commits, and the cordon holds everywhere.
  t.match(await (await admin(s, 'GET', '/admin/cordons')).json(), { cordons: [{ provider_id: 'gpu-b', reason: 'bad answers' }] })
  t.match(
    (await s.poolz()).pool.find((r) => r.provider_id === 'gpu-b'),
    { cordoned: true, routing_ineligible_reason: 'cordoned' },
  )
  for (let i = 0; i < 3; i++) await buyer(s.url).chat.completions.create({ model: 'test-model', messages })
  t.equal(p.requests.length, 0, 'a provider listed as cordoned gets no traffic')
})

t.test('A4: a DATABASE_URL password given as a query parameter is printed in the start_failed line', async (t) => {
  const c = spawnCoordinator(t, { DATABASE_URL: 'postgres://poolcoord@127.0.0.1:9/poolcoord?password=s3cret' })
  await c.exited
  t.ok(
    c.lines.some((l) => l.event === 'coordinator.start_failed'),
    'the start failed',
  )
  t.notOk(
    JSON.stringify(c.lines).includes('s3cret'),
    `the password appears in no log line: ${JSON.stringify(c.lines.find((l) => l.event === 'coordinator.start_failed')?.msg)}`,
  )
  const f = explainStartupFailure(Object.assign(new Error('x'), { code: 'ECONNREFUSED' }), {
    host: '127.0.0.1',
    port: 8080,
    dataDir: './data',
    databaseUrl: 'postgres://u@db:5432/x?sslmode=require&password=hunter2',
  })
  t.notMatch(f.message, /hunter2/, 'explainStartupFailure redacts ?password=')
})

t.test('A5: an unresolvable COORD_HOST is blamed on DATABASE_URL', async (t) => {
  const c = spawnCoordinator(t, { COORD_HOST: 'no-such-host.invalid', DATABASE_URL: 'postgres://poolcoord:pw@127.0.0.1:9/poolcoord' })
  await c.exited
  const line = c.lines.find((l) => l.event === 'coordinator.start_failed')
  t.match(line?.msg, /COORD_HOST/, `the message names COORD_HOST (got: ${JSON.stringify(line?.msg)})`)
})

t.test('A6: admin inputs are not bounded above: a usage error becomes a store outage (503)', async (t) => {
  const s = await startTestService(t)
  for (const older of [1e12, 1e300]) {
    const res = await admin(s, 'POST', '/admin/tokens/prune', { older_than_s: older })
    const body = (await res.json()) as { error?: { code: string } }
    t.equal(res.status, 400, `older_than_s=${older}: 400 COORD_BAD_REQUEST, not ${res.status} ${body.error?.code}`)
  }
})

t.test('A7: the database path skips the admin API\'s checks on a cordon reason ("the same checks run either way")', async (t) => {
  const dataDir = mkdtempSync(joinPath(tmpdir(), 'poolcoord-review-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  // Nothing listens there, so the CLI works on the (embedded) database directly.
  const env = { COORD_OPERATOR_KEY: OPERATOR_KEY, COORD_DATA_DIR: dataDir, COORD_PORT: await closedPort() }
  const reason = '\u001b]0;pwned\u0007\u001b[2J' + 'x'.repeat(5000)
  const r = await runCli(['cordon', '--provider-id', 'gpu-c', '--reason', reason], env)
  t.equal(r.code, 2, `a reason with control characters / over 1024 characters is a usage error, as over HTTP (got exit ${r.code})`)
  const listed = await runCli(['list-cordons'], env)
  t.notMatch(listed.stdout, /\u001b/, "no terminal escape sequence reaches the operator's terminal")
})

t.test('A8: provider-agent refuses a hello_ack without heartbeat_interval_s (protocol.md: "default 30"; the old agent defaulted it)', async (t) => {
  const ack = parseHelloAck({ type: 'hello_ack', coordinator_version: 1, assigned_id: 'a1', auth_state: 'bearer_validated' })
  t.ok(ack.ok, `accepted (got ${JSON.stringify(ack)})`)
  if (ack.ok) t.equal(ack.value.heartbeat_interval_s, 30)
})

t.test('A9: coordinator-cli hands the 0600 operator key to whatever answers /healthz on the coordinator port', async (t) => {
  const dataDir = mkdtempSync(joinPath(tmpdir(), 'poolcoord-review-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const key = 'k'.repeat(40)
  writeFileSync(joinPath(dataDir, 'operator-key'), `${key}\n`, { mode: 0o600 })
  // Any local user can bind the coordinator's port while it is down (a restart, a crash).
  const seen: string[] = []
  const fake = http.createServer((req, res) => {
    seen.push(req.headers.authorization ?? '')
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(req.url === '/healthz' ? '{"status":"ok"}' : '{"tokens":[]}')
  })
  await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise<void>((r) => fake.close(() => r())))
  const port = String((fake.address() as { port: number }).port)
  await runCli(['list-tokens'], { COORD_DATA_DIR: dataDir, COORD_PORT: port })
  t.notOk(
    seen.some((a) => a.includes(key)),
    `the operator key never reaches an unauthenticated endpoint (sent: ${JSON.stringify(seen)})`,
  )
})
