import { once } from 'node:events'
import t from 'tap'
import { MIN_NATS_MAX_PAYLOAD, NatsLink, type NatsLinkOptions } from '../../src/cluster/nats-link.js'
import { ConfigError, NatsUnavailableError } from '../../src/errors.js'
import { explainStartupFailure } from '../../src/startup-error.js'
import { captureLogs } from '../helpers/logs.js'
import { startNatsServer } from '../helpers/nats-server.js'

const MiB = 1024 * 1024

function options(url: string): NatsLinkOptions {
  return { servers: [url], name: 'test-node', log: captureLogs().logger, connectTimeoutMs: 2_000 }
}

t.test('the minimum payload covers a 4 MiB inference request plus headers', async (t) => {
  t.equal(MIN_NATS_MAX_PAYLOAD, 4 * MiB + 64 * 1024)
})

t.test('a server with the default max_payload (1 MiB) is refused: exit 2, with the remedy', async (t) => {
  const nats = await startNatsServer(t)
  const err = await NatsLink.connect(options(nats.url)).then(
    () => null,
    (e: unknown) => e,
  )
  t.ok(err instanceof ConfigError, 'a ConfigError')
  t.match((err as Error).message, `accepts messages of at most ${MiB} bytes (max_payload)`)
  t.match((err as Error).message, `needs at least ${MIN_NATS_MAX_PAYLOAD}: set max_payload: 8MB`)
  t.match((err as Error).message, `127.0.0.1:${nats.port}`, 'names the server')
  t.equal(explainStartupFailure(err, null).exitCode, 2)
})

t.test('a server just below the minimum is refused; at the minimum and at 8 MiB it is accepted', async (t) => {
  const below = await startNatsServer(t, { maxPayload: MIN_NATS_MAX_PAYLOAD - 1 })
  await t.rejects(NatsLink.connect(options(below.url)), ConfigError)
  for (const maxPayload of [MIN_NATS_MAX_PAYLOAD, 8 * MiB]) {
    const nats = await startNatsServer(t, { maxPayload })
    const link = await NatsLink.connect(options(nats.url))
    t.teardown(() => link.close())
    t.equal(link.status, 'connected', `max_payload ${maxPayload} accepted`)
    t.equal(link.nc.info?.max_payload, maxPayload)
  }
})

t.test('a server without JetStream is refused: exit 2, with the remedy', async (t) => {
  const nats = await startNatsServer(t, { jetstream: false, maxPayload: 8 * MiB })
  const err = await NatsLink.connect(options(nats.url)).then(
    () => null,
    (e: unknown) => e,
  )
  t.ok(err instanceof ConfigError, 'a ConfigError')
  t.match((err as Error).message, /^JetStream is not enabled on the NATS server at 127\.0\.0\.1:\d+: start nats-server with -js/)
  t.equal(explainStartupFailure(err, null).exitCode, 2)
})

t.test('no server answering is NatsUnavailableError: exit 1 (it may come back; systemd restarts)', async (t) => {
  const nats = await startNatsServer(t, { maxPayload: 8 * MiB })
  await nats.stop()
  const started = performance.now()
  const err = await NatsLink.connect(options(nats.url)).then(
    () => null,
    (e: unknown) => e,
  )
  t.ok(err instanceof NatsUnavailableError)
  t.match(err, { code: 'COORD_NATS_UNAVAILABLE', message: `no NATS server in COORD_NATS_URL (${nats.url}) answered` })
  t.equal(explainStartupFailure(err, null).exitCode, 1)
  t.ok(performance.now() - started < 5_000, 'fails fast rather than retrying forever at start')
})

t.test('status: down when the server stops, up again by itself when it returns', async (t) => {
  const nats = await startNatsServer(t, { maxPayload: 8 * MiB })
  const logs = captureLogs()
  const link = await NatsLink.connect({ ...options(nats.url), log: logs.logger })
  t.teardown(() => link.close())
  const down = once(link, 'status', { signal: AbortSignal.timeout(10_000) })
  await nats.stop()
  t.strictSame(await down, ['disconnected'])
  t.equal(link.status, 'disconnected')
  const up = once(link, 'status', { signal: AbortSignal.timeout(15_000) })
  await nats.restart()
  t.strictSame(await up, ['connected'])
  t.equal(logs.events('nats.disconnected').length, 1)
  t.equal(logs.events('nats.reconnected').length, 1)
  await link.nc.flush()
  await link.close()
  t.equal(link.status, 'closed')
  await t.resolves(link.close(), 'closing twice is harmless')
})
