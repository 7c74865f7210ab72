// The agent's fallback to v1 is sticky for the life of the process. One connection that lands on
// a node without identity v2 (a rolling upgrade behind a load balancer, a middlebox that strips
// Sec-WebSocket-Protocol) turns a key-pinned agent into a v1 agent for good; on the v2
// coordinator its pinned id refuses every v1 bearer (4005), and the agent waits the long backoff
// again and again, never trying its key: locked out until someone restarts it.
import net from 'node:net'
import t from 'tap'
import { WebSocketServer } from 'ws'
import { agentConfig, startAgent, startMock, stateDir } from '../helpers/agent.js'
import { startTestService, waitFor } from '../helpers/service.js'

t.test('one hop to a node without v2 must not lock a key-pinned agent out of its v2 coordinator', async (t) => {
  // A v1-only node: selects no subprotocol.
  const legacy = new WebSocketServer({ port: 0, host: '127.0.0.1', handleProtocols: () => false as const })
  await new Promise((r) => legacy.once('listening', r))
  t.teardown(() => new Promise<void>((r) => legacy.close(() => r())))
  const legacyPort = (legacy.address() as { port: number }).port

  // The load balancer the agent dials: connection `legacyAt` goes to the old node, the rest to the v2 coordinator.
  let n = 0
  const legacyAt = 2
  let realPort = 0
  const sockets = new Set<net.Socket>()
  const lb = net.createServer((down) => {
    n++
    const up = net.connect(n === legacyAt ? legacyPort : realPort, '127.0.0.1')
    for (const s of [down, up]) {
      sockets.add(s)
      s.on('error', () => undefined)
      s.on('close', () => (sockets.delete(s), down.destroy(), up.destroy()))
    }
    down.pipe(up).pipe(down)
  })
  await new Promise<void>((r) => lb.listen(0, '127.0.0.1', () => r()))
  t.teardown(() => {
    for (const s of sockets) s.destroy()
    return new Promise<void>((r) => lb.close(() => r()))
  })
  const lbUrl = `ws://127.0.0.1:${(lb.address() as net.AddressInfo).port}/ws/provider`

  const svc = await startTestService(t, { env: { publicOrigin: new URL(lbUrl).origin } })
  realPort = Number(new URL(svc.url).port)
  const mock = await startMock(t)
  const dir = await stateDir(t)
  const a = await startAgent(t, agentConfig({ coordinatorUrl: lbUrl, backendUrl: mock.url, stateDir: dir, providerId: 'mac-1' }), { protocol: 'v2' })
  t.match(await a.admitted(1), { authState: 'key_proven' }, 'enrolled through the load balancer')
  await waitFor(async () => a.logs.events('agent.token_saved').length === 1, 'token saved')

  // The connection drops; the reconnect hits the old node once, then the v2 coordinator again.
  for (const s of sockets) s.destroy()
  await waitFor(() => n >= 3, 'the agent reached the v2 coordinator again')

  let admitted = false
  try {
    await a.admitted(2)
    admitted = true
  } catch {
    admitted = false
  }
  t.ok(admitted, 'the agent is admitted again by its key')
  t.same(
    a.backoffs.filter((b) => b.kind === 'token_refused'),
    [],
    `no long token_refused backoff on the v2 coordinator (got ${JSON.stringify(a.backoffs)})`,
  )
  t.same(svc.logs.events('admission.key_required'), [], 'the agent never presented its bearer by v1 to its pinned id')
})
