import { SSE_CHUNKS, chatBody } from './payloads.mjs'

/** Every target must give the same answers before its speed means anything. */
export async function checkAnswers(url) {
  const sse = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: chatBody(true) })
  const text = await sse.text()
  const events = text.match(/^data: /gm)?.length ?? 0
  if (sse.status !== 200 || events !== SSE_CHUNKS + 1 || !text.endsWith('data: [DONE]\n\n')) {
    throw new Error(`${url}: streamed answer has ${events} events (status ${sse.status}), expected ${SSE_CHUNKS + 1}`)
  }
  const json = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: chatBody(false) })
  const body = await json.json()
  if (json.status !== 200 || body.object !== 'chat.completion') throw new Error(`${url}: bad JSON answer (status ${json.status})`)
}
