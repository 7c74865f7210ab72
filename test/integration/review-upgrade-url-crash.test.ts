import net from 'node:net'
import t from 'tap'
import { startTestService } from '../helpers/service.js'

/**
 * Finding: src/ws/upgrade.ts:26 runs `new URL(req.url, 'http://coordinator')` synchronously in
 * the 'upgrade' listener. A request-target such as `//` is accepted by Node's HTTP parser but is
 * not a valid URL against that base, so the constructor throws inside an event listener: an
 * uncaught exception that kills the coordinator. One unauthenticated request, no body.
 */
t.test('an upgrade request for "//" does not throw out of the upgrade listener', async (t) => {
  const s = await startTestService(t)
  const port = Number(new URL(s.url).port)
  const uncaught: unknown[] = []
  // Captured here so the test can report it instead of the whole tap process dying.
  const onUncaught = (err: unknown) => void uncaught.push(err)
  // tap installs its own handler; ours must run first so the process survives to report.
  process.prependListener('uncaughtException', onUncaught)
  t.teardown(() => void process.removeListener('uncaughtException', onUncaught))

  const raw = net.connect(port, '127.0.0.1')
  raw.on('error', () => undefined)
  await new Promise<void>((resolve) => raw.once('connect', () => resolve()))
  raw.write(
    'GET // HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
      'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
  )
  raw.end()
  await new Promise<void>((resolve) => raw.once('close', () => resolve()))
  // Let any deferred listener errors surface.
  await new Promise((r) => setImmediate(r))

  t.same(
    uncaught.map((e) => (e as { code?: string }).code ?? String(e)),
    [],
    'no uncaught exception escaped the upgrade listener (in production this is a process crash)',
  )
  const health = await fetch(`${s.url}/healthz`)
  t.equal(health.status, 200, 'the coordinator still answers')
})
