// The frames of one turn leave in one write; the mask is skipped only where no one can misread it.
import { Duplex } from 'node:stream'
import t from 'tap'
import WebSocket from 'ws'
import { FrameWriter, maskOption } from '../../src/frame-writer.js'

function fakes(): { ws: WebSocket; socket: Duplex; log: string[] } {
  const log: string[] = []
  const ws = { readyState: WebSocket.OPEN, bufferedAmount: 0, send: (text: string) => void log.push(`send ${text}`) } as unknown as WebSocket
  const socket = new Duplex({
    read() {},
    write(_c, _e, cb) {
      cb()
    },
  })
  socket.cork = () => void log.push('cork')
  socket.uncork = () => void log.push('uncork')
  return { ws, socket, log }
}

t.test('the frames of one turn are corked together, with the coalesced frame last', async (t) => {
  const { ws, socket, log } = fakes()
  const w = new FrameWriter(ws, () => {
    log.push('beforeFlush')
    w.send('hb')
  })
  w.attach(socket)
  w.send('a')
  w.send('b')
  w.atTurnEnd()
  t.same(log, ['cork', 'send a', 'send b'], 'held until the turn ends')
  await new Promise((r) => setImmediate(r))
  t.same(log, ['cork', 'send a', 'send b', 'beforeFlush', 'send hb', 'uncork'], 'one write, the heartbeat in it')
  await new Promise((r) => setImmediate(r))
  t.equal(log.filter((l) => l === 'cork').length, 1, 'no second turn for the heartbeat')
})

t.test('a closed socket takes nothing; a backed-up one makes the caller wait', async (t) => {
  const { ws, log } = fakes()
  const w = new FrameWriter(ws, () => {})
  ;(ws as { readyState: number }).readyState = WebSocket.CLOSED
  t.equal(w.send('x'), undefined)
  t.same(log, [])
  ;(ws as { readyState: number }).readyState = WebSocket.OPEN
  ;(ws as { bufferedAmount: number }).bufferedAmount = 8 * 1024 * 1024
  let cb: (() => void) | undefined
  ;(ws as unknown as { send: (text: string, done: () => void) => void }).send = (_text, done) => (cb = done)
  const wait = w.send('y')
  t.ok(wait instanceof Promise)
  cb!()
  await wait
})

t.test('frames go unmasked only over TLS or loopback', async (t) => {
  t.type(maskOption('wss://pool.example/ws/provider').generateMask, 'function')
  for (const host of ['127.0.0.1', 'localhost', '[::1]']) t.type(maskOption(`ws://${host}:8080/ws/provider`).generateMask, 'function', host)
  t.same(maskOption('ws://10.0.0.5:8080/ws/provider'), {}, 'plain ws:// across a network keeps the random mask')
  const mask = Buffer.alloc(4)
  maskOption('wss://pool.example/ws/provider').generateMask!(mask)
  t.same([...mask], [0, 0, 0, 0], 'left zero: ws then sends the frame as it is')
})
