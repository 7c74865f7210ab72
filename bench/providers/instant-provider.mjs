// One provider socket that answers every request at once: a JSON answer, or 20 SSE chunks.
// Speaks the poolcoord protocol (specs/protocol.md) or the ideal relay's minimal one.
// Usage: instant-provider.mjs <ws url> <poolcoord|relay> [provider_id]
import { FEATURE_END_DATA, encode, heartbeat, hello, responseChunk, responseEnd } from '@poolcoord/protocol'
import WebSocket from 'ws'
import { JSON_ANSWER, MODEL, SSE_EVENTS, SSE_EVENTS_RELAY, USAGE } from '../lib/payloads.mjs'

const [url, protocol, providerId = 'bench-instant'] = process.argv.slice(2)
const MAX_CONCURRENCY = 256
const ws = new WebSocket(url, { perMessageDeflate: false })
ws.on('error', (err) => {
  console.error(`instant-provider: ${err.message}`)
  process.exit(1)
})
// The peer going away ends this process: it only ever serves one target.
ws.on('close', () => process.exit(0))

if (protocol === 'relay') {
  ws.on('open', () => process.send?.({ type: 'ready' }))
  ws.on('message', (data) => {
    const req = JSON.parse(data)
    if (!req.stream) return ws.send(JSON.stringify({ type: 'response', id: req.id, body: JSON_ANSWER }))
    for (const event of SSE_EVENTS_RELAY) ws.send(JSON.stringify({ type: 'chunk', id: req.id, data: event }))
    ws.send(JSON.stringify({ type: 'end', id: req.id }))
  })
} else {
  const heartbeatFrame = encode(heartbeat('ready', MAX_CONCURRENCY, MAX_CONCURRENCY))
  let endData = false
  ws.on('open', () =>
    ws.send(
      encode(
        hello({
          provider_id: providerId,
          hostname: 'instant.bench',
          model_id: MODEL,
          binary_version: 'bench-1',
          max_concurrency: MAX_CONCURRENCY,
          max_context_tokens: 8192,
          throughput_tps_estimate: 1000,
        }),
      ),
    ),
  )
  ws.on('message', (data) => {
    const msg = JSON.parse(data)
    if (msg.type === 'inference_request') {
      const id = msg.request_id
      if (!msg.stream) {
        // As the agent answers: one frame when the coordinator offered `end_data` (specs/protocol.md §4.3).
        if (endData) return ws.send(encode(responseEnd(id, 'complete', { usage: USAGE, data: JSON_ANSWER })))
        ws.send(encode(responseChunk(id, 0, JSON_ANSWER)))
      } else {
        for (let i = 0; i < SSE_EVENTS.length; i++) {
          ws.send(encode(responseChunk(id, i, SSE_EVENTS[i])))
        }
      }
      ws.send(encode(responseEnd(id, 'complete', { usage: USAGE })))
    } else if (msg.type === 'hello_ack') {
      endData = Array.isArray(msg.features) && msg.features.includes(FEATURE_END_DATA)
      // Any inbound frame keeps the session alive; a heartbeat also restates the slots.
      setInterval(() => ws.send(heartbeatFrame), 20_000).unref()
      process.send?.({ type: 'ready', ack: msg })
    }
  })
}
process.on('disconnect', () => process.exit(0))
