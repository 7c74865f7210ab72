// The outcome table of backend-client.ts, and reading usage, without a network.
import t from 'tap'
import { endStatusOfHttp, endStatusOfNetworkError } from '../../src/backend-outcome.js'
import { MAX_SSE_LINE, SseUsage, usageOfJson } from '../../src/sse-usage.js'

t.test('a request that got no answer', async (t) => {
  for (const code of ['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']) {
    t.equal(endStatusOfNetworkError(code), 'error_model_not_loaded', `${code}: the backend is not there, the coordinator fails over`)
  }
  for (const code of ['ECONNRESET', 'EPIPE', 'ETIMEDOUT', undefined]) t.equal(endStatusOfNetworkError(code), 'error_internal', String(code))
})

t.test('statuses other than 2xx', async (t) => {
  t.equal(endStatusOfHttp(404, ''), 'error_model_not_loaded')
  t.equal(endStatusOfHttp(429, ''), 'error_queue_full')
  t.equal(endStatusOfHttp(503, ''), 'error_queue_full')
  t.equal(endStatusOfHttp(400, JSON.stringify({ error: { code: 'context_length_exceeded', message: 'too long' } })), 'error_context_exceeded')
  t.equal(endStatusOfHttp(400, JSON.stringify({ error: { code: 'invalid_request' } })), 'error_internal', 'another 400')
  t.equal(endStatusOfHttp(400, 'null'), 'error_internal', 'JSON, but not an object')
  t.equal(endStatusOfHttp(400, '<html>bad request'), 'error_internal', 'not JSON')
  for (const s of [204, 401, 403, 413, 500, 502]) t.equal(endStatusOfHttp(s, ''), 'error_internal', String(s))
})

t.test('usage of a whole answer', async (t) => {
  t.same(usageOfJson(JSON.stringify({ usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 } })), {
    prompt_tokens: 1,
    completion_tokens: 2,
    total_tokens: 3,
  })
  t.equal(usageOfJson('{"choices":[]}'), null, 'none')
  t.equal(usageOfJson('{"usage": '), null, 'not JSON')
})

t.test('usage from an SSE stream, across reads', async (t) => {
  const u = new SseUsage()
  const event = `data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: 3, completion_tokens: 11, total_tokens: 14 } })}\n\n`
  u.feed('data: {"choices":[{"delta":{"content":"hi"}}]}\n\n')
  t.equal(u.usage, null)
  // The usage event cut in three reads, the key itself cut in two.
  u.feed(event.slice(0, 20))
  u.feed(event.slice(20, 45))
  u.feed(`${event.slice(45)}data: [DONE]\n\n`)
  t.same(u.usage, { prompt_tokens: 3, completion_tokens: 11, total_tokens: 14 })
})

t.test('an SSE line past the bound is dropped, not held', async (t) => {
  const u = new SseUsage()
  u.feed(`data: {"usage":${' '.repeat(MAX_SSE_LINE)}`)
  u.feed('{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}\n\n')
  t.equal(u.usage, null, 'the runaway line was dropped')
  u.feed('data: {"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}\n\n')
  t.same(u.usage, { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 }, 'the next line is read')
})
