import { connect, type Socket } from 'node:net'
import t from 'tap'
import WebSocket from 'ws'
import { startTestService } from '../helpers/service.js'

// Review of the admission deadline (specs/protocol.md §1.3: a pre-auth slot is held "never longer
// than the admission deadline, for v1 and identity v2 alike"). At the deadline the coordinator
// sends a close frame and waits up to 2 s (CLOSE_GRACE_MS) for the peer's answer before it cuts
// the socket; the slot is given back only when the socket closes. A flood that never answers a
// close frame therefore holds every slot it takes for the deadline plus 2 s (12 s, not 10 s by
// default), and a provider from the same address is refused 429 in between.

const FROM = '127.0.0.95'

/** An upgrade from a peer that reads everything and never answers, not even a close frame. */
function deafUpgrade(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = connect({ port, host: '127.0.0.1', localAddress: FROM })
    sock.on('error', () => undefined)
    sock.once('connect', () =>
      sock.write(
        'GET /ws/provider HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
      ),
    )
    sock.once('data', (d) => (d.toString().startsWith('HTTP/1.1 101') ? resolve(sock) : reject(new Error(d.toString()))))
    sock.on('data', () => undefined)
  })
}

function upgradeStatus(wsUrl: string): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(wsUrl, { localAddress: FROM, perMessageDeflate: false })
    ws.on('error', () => undefined)
    ws.once('open', () => {
      ws.terminate()
      resolve(101)
    })
    ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0))
  })
}

t.test('a peer that ignores the close frame keeps its pre-auth slot past the admission deadline', async (t) => {
  const s = await startTestService(t, { limits: { admissionDeadlineMs: 2000, maxPendingPerIp: 1 } })
  const port = Number(new URL(s.url).port)
  const deaf = await deafUpgrade(port)
  t.teardown(() => deaf.destroy())
  const started = performance.now()
  t.equal(await upgradeStatus(s.wsUrl), 429, 'while it is pending, its address has no second slot (cap 1)')
  await new Promise((r) => setTimeout(r, 2500 - (performance.now() - started)))
  t.equal(await upgradeStatus(s.wsUrl), 101, 'half a second past the 2 s deadline the slot is free again')
})
