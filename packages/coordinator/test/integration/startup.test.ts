import { existsSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { ensurePgliteSeed } from '../../src/db/pglite-seed.js'
import { childUrls, spawnCoordinator, type ChildCoordinator } from '../helpers/child-coordinator.js'

/*
 * A failed start, as a newcomer or systemd sees it: the process names the cause and the fix,
 * exits (2 for a wrong setting, 1 otherwise) soon after finding it, and leaves nothing running.
 */

/**
 * "Soon": a start that failed exits in well under a second, measured from its log line's
 * timestamp to the exit this process sees. The bound leaves room for two loaded vCPUs; a process
 * kept alive by a retry loop or an open handle still fails it.
 */
const EXIT_SOON_MS = 5_000

async function failure(t: Test, c: ChildCoordinator): Promise<{ code: number | null; line: Record<string, unknown>; exitAfterMs: number }> {
  const { code } = await c.exited
  const exitedAt = Date.now()
  const line = c.lines.find((l) => l.event === 'coordinator.start_failed')
  t.ok(line, 'one start_failed line')
  const loggedAt = typeof line?.time === 'number' ? line.time : exitedAt
  return { code, line: line ?? {}, exitAfterMs: exitedAt - loggedAt }
}

t.test('a busy port is found before the database is opened: exit 1, naming COORD_PORT', async (t) => {
  const busy = createServer()
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise<void>((r) => busy.close(() => r())))
  const port = (busy.address() as { port: number }).port
  const c = spawnCoordinator(t, { COORD_PORT: String(port) })
  const f = await failure(t, c)
  t.equal(f.code, 1)
  t.match(f.line.msg, new RegExp(`port ${port} is in use on 127\\.0\\.0\\.1: stop what holds it, or set COORD_PORT to a free port`))
  t.ok(f.exitAfterMs < EXIT_SOON_MS, `exited ${f.exitAfterMs} ms after reporting it`)
  t.notOk(existsSync(join(c.dataDir, 'pglite')), 'the database was never opened')
})

t.test('settings that are wrong exit 2 and say what is valid', async (t) => {
  const cases: Array<[string, Record<string, string>, RegExp]> = [
    [
      'an unknown log level',
      { COORD_LOG_LEVEL: 'verbose' },
      /COORD_LOG_LEVEL="verbose" is not a log level; use one of fatal, error, warn, info, debug, trace, silent/,
    ],
    ['an unknown log format', { COORD_LOG_FORMAT: 'xml' }, /COORD_LOG_FORMAT must be one of auto, pretty, json/],
    // 192.0.2.1 is TEST-NET-1: never an address of this machine, and nothing is sent to it.
    ['a host the machine does not have', { COORD_HOST: '192.0.2.1' }, /COORD_HOST=192\.0\.2\.1 is not an address of this machine/],
    ['a port out of range', { COORD_PORT: '70000' }, /COORD_PORT must be an integer from 0 to 65535/],
    [
      'cluster mode on the embedded database',
      { COORD_NATS_URL: 'nats://127.0.0.1:4222' },
      /cluster mode \(COORD_NATS_URL\) needs PostgreSQL: set DATABASE_URL/,
    ],
  ]
  for (const [name, env, message] of cases) {
    const c = spawnCoordinator(t, { COORD_LOG_LEVEL: 'info', ...env })
    const f = await failure(t, c)
    t.equal(f.code, 2, `${name}: exit 2`)
    t.match(f.line.msg, message, name)
    t.notOk(existsSync(join(c.dataDir, 'pglite')), `${name}: nothing opened`)
  }
})

t.test('a database that cannot be reached: exit 1 soon after, naming DATABASE_URL, without its password', async (t) => {
  // Port 9 (discard) on loopback refuses at once.
  const c = spawnCoordinator(t, { DATABASE_URL: 'postgres://poolcoord:s3cret@127.0.0.1:9/poolcoord' })
  const f = await failure(t, c)
  t.equal(f.code, 1)
  t.match(f.line.msg, /PostgreSQL at postgres:\/\/poolcoord:\*\*\*@127\.0\.0\.1:9\/poolcoord refused the connection: is it running\? \(DATABASE_URL\)/)
  t.notOk(JSON.stringify(c.lines).includes('s3cret'), 'the password appears in no log line')
  t.ok(f.exitAfterMs < EXIT_SOON_MS, `exited ${f.exitAfterMs} ms after reporting it`)
})

t.test('the first start on the embedded database writes the built seed and says so, before it listens', async (t) => {
  // What npm run build made; built here if this checkout was only type-checked.
  const { file } = await ensurePgliteSeed()
  const c = spawnCoordinator(t)
  const created = await c.event('db.created')
  t.match(created, { from: 'seed', msg: /created the embedded database in .*pglite$/ })
  await childUrls(c)
  const order = c.lines.map((l) => l.event).filter((e) => e === 'db.created' || e === 'db.creating' || e === 'coordinator.started')
  t.same(order, ['db.created', 'coordinator.started'], `from ${file}, with no initdb`)
})

t.test('COORD_LOG_FORMAT=pretty writes readable lines, not JSON, with the same redaction', async (t) => {
  const c = spawnCoordinator(t, { COORD_LOG_FORMAT: 'pretty', COORD_LOG_LEVEL: 'info' })
  await t.resolves(
    (async () => {
      for (;;) {
        if (c.lines.some((l) => typeof l.raw === 'string' && l.raw.includes('coordinator listening'))) return
        if (c.child.exitCode !== null) throw new Error('exited')
        await new Promise((r) => setTimeout(r, 50))
      }
    })(),
  )
  const raw = c.lines.filter((l) => typeof l.raw === 'string')
  t.ok(raw.length >= 2, 'lines are text')
  t.equal(c.lines.length, raw.length, 'no JSON line at all')
  t.match(raw.find((l) => String(l.raw).includes('coordinator listening'))?.raw, /INFO.*coordinator listening/)
  t.notOk(
    c.lines.some((l) => String(l.raw).includes('test-operator-key')),
    'no key in the log',
  )
})
