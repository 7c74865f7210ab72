// Baseline: the least a relay coordinator must do. HTTP in, one JSON frame over one WebSocket to
// a responder, the answer back out (JSON, or SSE chunks written as they arrive). No auth, no
// registry, no validation beyond parsing the body for `stream`. With several responders (the
// http section's pool floor), each request goes to one at random. Usage: ideal-relay.mjs <port>
import http from 'node:http'
import { WebSocketServer } from 'ws'

const port = Number(process.argv[2])
const pending = new Map()
const responders = []
let nextId = 0

const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 1024 * 1024 })
const server = http.createServer((req, res) => {
  const parts = []
  req.on('data', (c) => parts.push(c))
  req.on('end', () => {
    const body = Buffer.concat(parts).toString()
    if (responders.length === 0) return void res.writeHead(503).end()
    const responder = responders.length === 1 ? responders[0] : responders[Math.floor(Math.random() * responders.length)]
    const id = String(++nextId)
    pending.set(id, { res, started: false })
    responder.send(JSON.stringify({ type: 'request', id, stream: JSON.parse(body).stream === true, body }))
  })
})
server.on('upgrade', (req, socket, head) =>
  wss.handleUpgrade(req, socket, head, (ws) => {
    responders.push(ws)
    ws.on('message', onFrame)
    ws.on('close', () => responders.splice(responders.indexOf(ws), 1))
  }),
)

function onFrame(data) {
  const msg = JSON.parse(data)
  const p = pending.get(msg.id)
  if (p === undefined) return
  if (msg.type === 'response') {
    pending.delete(msg.id)
    p.res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(msg.body) })
    p.res.end(msg.body)
  } else if (msg.type === 'chunk') {
    if (!p.started) {
      p.started = true
      p.res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' })
    }
    p.res.write(msg.data)
  } else if (msg.type === 'end') {
    pending.delete(msg.id)
    p.res.end('data: [DONE]\n\n')
  }
}

server.listen(port, '127.0.0.1', () => process.send?.({ type: 'ready' }))
process.on('disconnect', () => process.exit(0))
