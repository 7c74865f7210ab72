/** The buyer request and the provider answers, the same bytes for the coordinator and the ideal relay. */

export const MODEL = 'bench-model'

export function chatBody(stream) {
  return JSON.stringify({
    model: MODEL,
    messages: [
      { role: 'system', content: 'You are a helpful assistant.' },
      { role: 'user', content: 'Write one sentence about load balancers and why they matter in practice.' },
    ],
    max_tokens: 64,
    temperature: 0.7,
    stream,
  })
}

/** A non-streamed chat.completion, about 220 bytes. */
export const JSON_ANSWER = JSON.stringify({
  id: 'chatcmpl-bench',
  object: 'chat.completion',
  created: 1763800000,
  model: MODEL,
  choices: [{ index: 0, message: { role: 'assistant', content: 'Load balancers spread work.' }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 31, completion_tokens: 6, total_tokens: 37 },
})

export const USAGE = { prompt_tokens: 31, completion_tokens: 20, total_tokens: 51 }

export const SSE_CHUNKS = 20

/** The 20 SSE events of a streamed answer, each about 110 bytes; the last also carries [DONE]. */
export const SSE_EVENTS = Array.from({ length: SSE_CHUNKS }, (_, i) => {
  const event = `data: ${JSON.stringify({ id: 'chatcmpl-bench', object: 'chat.completion.chunk', model: MODEL, choices: [{ index: 0, delta: { content: `tok${i} ` } }] })}\n\n`
  return i === SSE_CHUNKS - 1 ? `${event}data: [DONE]\n\n` : event
})

/** The same events without the [DONE], for the ideal relay, which writes [DONE] on its end frame. */
export const SSE_EVENTS_RELAY = SSE_EVENTS.map((e, i) => (i === SSE_CHUNKS - 1 ? e.replace('data: [DONE]\n\n', '') : e))
