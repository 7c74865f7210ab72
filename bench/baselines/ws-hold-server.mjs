// Baseline: a bare ws server that accepts connections and holds them, reading (and ignoring)
// whatever frames arrive. Usage: ws-hold-server.mjs <port>
import { WebSocketServer } from 'ws'

const port = Number(process.argv[2])
const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false, maxPayload: 1024 * 1024 })
wss.on('connection', (ws) => {
  ws.on('message', () => undefined)
  ws.on('error', () => undefined)
})
wss.on('listening', () => process.send?.({ type: 'ready' }))
process.on('disconnect', () => process.exit(0))
