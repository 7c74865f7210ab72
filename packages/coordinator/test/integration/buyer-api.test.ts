import t from 'tap'
import { OPERATOR_KEY, startTestService, waitFor } from '../helpers/service.js'
import { apiError, buyer } from '../helpers/buyer.js'
import { TOKENS, TestProvider, answer } from '../helpers/test-provider.js'

const messages = [{ role: 'user' as const, content: 'Say hello to the pool.' }]

t.test('non-streaming completion through the openai client arrives intact', async (t) => {
  const { url, wsUrl, svc } = await startTestService(t)
  const p = await TestProvider.join(wsUrl, 'prov-a', { handler: answer() })
  const { data, response } = await buyer(url).chat.completions.create({ model: 'test-model', messages }).withResponse()
  t.equal(data.choices[0]?.message.content, TOKENS.join(''))
  t.same(data.usage, { prompt_tokens: 5, completion_tokens: TOKENS.length, total_tokens: 5 + TOKENS.length })
  t.equal(response.headers.get('x-pool-provider'), 'prov-a')
  t.match(response.headers.get('x-request-id'), /^req-[0-9a-f-]{36}$/)
  const sent = await p.request()
  t.equal(sent.stream, false)
  t.equal(sent.request_id, response.headers.get('x-request-id'), 'the provider sees the same request id as the buyer')
  t.same(JSON.parse(sent.body), { model: 'test-model', messages }, 'the buyer body is forwarded as sent')
  t.equal(svc.ctx.dispatcher.inFlight, 0)
  t.equal(svc.ctx.registry.get('prov-a')?.inFlight, 0)
})

t.test('streaming completion: tokens in order, SSE headers, slot released', async (t) => {
  const { url, wsUrl, svc } = await startTestService(t)
  await TestProvider.join(wsUrl, 'prov-s', { handler: answer() })
  const { data: stream, response } = await buyer(url).chat.completions.create({ model: 'test-model', messages, stream: true }).withResponse()
  t.equal(response.headers.get('content-type'), 'text/event-stream; charset=utf-8')
  t.equal(response.headers.get('cache-control'), 'no-cache')
  t.equal(response.headers.get('x-accel-buffering'), 'no')
  t.equal(response.headers.get('x-pool-provider'), 'prov-s')
  t.ok(response.headers.get('x-request-id'))
  const got: string[] = []
  for await (const chunk of stream) got.push(chunk.choices[0]?.delta.content ?? '')
  t.same(got, TOKENS)
  t.equal(svc.ctx.dispatcher.inFlight, 0)
  t.equal(svc.ctx.registry.get('prov-s')?.inFlight, 0)
})

t.test('streaming chunks reach the buyer as they arrive, not at the end', async (t) => {
  const { url, wsUrl } = await startTestService(t)
  const p = await TestProvider.join(wsUrl, 'prov-live')
  // Response headers wait for the first chunk (so that a failure before it keeps its status):
  // the call resolves only once the provider has sent something.
  const pending = buyer(url).chat.completions.create({ model: 'test-model', messages, stream: true })
  const req = await p.request()
  const sse = (word: string) =>
    `data: ${JSON.stringify({ id: 'x', object: 'chat.completion.chunk', created: 1, model: 'test-model', choices: [{ index: 0, delta: { content: word }, finish_reason: null }] })}\n\n`
  p.chunk(req.request_id, sse('zero'))
  const it = (await pending)[Symbol.asyncIterator]()
  t.equal((await it.next()).value?.choices[0]?.delta.content, 'zero')
  // The provider has not ended; the buyer must still get each chunk as soon as it is sent.
  for (const word of ['one', 'two', 'three']) {
    p.chunk(req.request_id, sse(word))
    const next = await it.next()
    t.equal(next.value?.choices[0]?.delta.content, word)
  }
  p.chunk(req.request_id, 'data: [DONE]\n\n')
  p.end(req.request_id)
  t.equal((await it.next()).done, true)
})

t.test('/v1/models lists models with eligible capacity only', async (t) => {
  const { url, wsUrl } = await startTestService(t)
  await TestProvider.join(wsUrl, 'm-1', { hello: { model_id: 'alpha', supported_models: ['beta'], max_concurrency: 2, max_context_tokens: 4096 } })
  await TestProvider.join(wsUrl, 'm-2', { hello: { model_id: 'alpha', max_concurrency: 3, max_context_tokens: 32768 } })
  const drained = await TestProvider.join(wsUrl, 'm-3', { hello: { model_id: 'gamma', max_concurrency: 8 } })
  drained.heartbeat('draining')
  await waitFor(async () => ((await (await fetch(`${url}/v1/models`)).json()) as { data: unknown[] }).data.length === 2, 'draining provider leaves the list')
  const page = await buyer(url).models.list()
  const byId = Object.fromEntries(page.data.map((m) => [m.id, m as unknown as Record<string, unknown>]))
  t.same(Object.keys(byId).sort(), ['alpha', 'beta'], 'gamma has no eligible provider')
  t.match(byId.alpha, { object: 'model', owned_by: 'poolcoord', provider_count: 2, total_slots: 5, free_slots: 5, max_context_tokens: 32768 })
  t.match(byId.beta, { provider_count: 1, total_slots: 2 })
  t.type(byId.alpha?.created, 'number')
})

t.test('X-Pool-Provider hard-pins: that provider serves, or 503 with no substitute', async (t) => {
  const { url, wsUrl } = await startTestService(t)
  const a = await TestProvider.join(wsUrl, 'pin-a', { handler: answer(), hello: { max_concurrency: 8 } })
  const b = await TestProvider.join(wsUrl, 'pin-b', { handler: answer(), hello: { max_concurrency: 1 } })
  const client = buyer(url)
  for (let i = 0; i < 3; i++) {
    const { response } = await client.chat.completions.create({ model: 'test-model', messages }, { headers: { 'X-Pool-Provider': 'pin-b' } }).withResponse()
    t.equal(response.headers.get('x-pool-provider'), 'pin-b', 'pinned to the provider with fewer free slots')
  }
  t.equal(b.requests.length, 3)
  t.equal(a.requests.length, 0)
  b.heartbeat('draining', 1, 1)
  await waitFor(async () => (await poolRoutable(url, 'pin-b')) === false, 'pin-b draining')
  const err = await apiError(client.chat.completions.create({ model: 'test-model', messages }, { headers: { 'X-Pool-Provider': 'pin-b' } }))
  t.equal(err.status, 503)
  t.equal(err.code, 'no_provider_available')
  t.equal(a.requests.length, 0, 'no substitute was used')
  const unknown = await apiError(client.chat.completions.create({ model: 'test-model', messages }, { headers: { 'X-Pool-Provider': 'nobody' } }))
  t.equal(unknown.status, 503)
  const bad = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-pool-provider': 'no spaces allowed' },
    body: JSON.stringify({ model: 'test-model', messages }),
  })
  t.equal(bad.status, 400)
})

t.test('an empty pool answers 503 no_provider_available with Retry-After', async (t) => {
  const { url } = await startTestService(t)
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'test-model', messages }),
  })
  // An empty pool (say, just after a restart) is temporary: 503 and retry, never 404.
  t.equal(res.status, 503)
  t.same(await res.json(), {
    error: { message: 'no provider is available for this model; retry shortly', type: 'server_error', code: 'no_provider_available' },
  })
  t.equal(res.headers.get('retry-after'), '1')
  t.ok(res.headers.get('x-request-id'))
  t.equal(res.headers.get('x-pool-provider'), null, 'no provider served it')
})

t.test('a known model with no eligible provider answers 503 no_provider_available', async (t) => {
  const { url, wsUrl } = await startTestService(t)
  const p = await TestProvider.join(wsUrl, 'busy-1')
  p.heartbeat('busy', 0, 4)
  await waitFor(async () => (await poolRoutable(url, 'busy-1')) === false, 'busy')
  const err = await apiError(buyer(url).chat.completions.create({ model: 'test-model', messages }))
  t.equal(err.status, 503)
  t.equal(err.code, 'no_provider_available')
  t.equal(err.headers?.get('retry-after'), '1')
  t.equal(p.requests.length, 0)
})

t.test('request validation: 400 invalid_json, 400 invalid_request, 413, 404, 405', async (t) => {
  const { url, wsUrl } = await startTestService(t, { limits: { maxBodyBytes: 4096 } })
  await TestProvider.join(wsUrl, 'v-1', { handler: answer() })
  const post = (body: string, headers: Record<string, string> = {}) =>
    fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body })
  const cases: Array<[string, string, number, string]> = [
    ['malformed JSON', '{"model":', 400, 'invalid_json'],
    ['a JSON array', '[]', 400, 'invalid_json'],
    ['no model', JSON.stringify({ messages }), 400, 'invalid_request'],
    ['empty model', JSON.stringify({ model: '', messages }), 400, 'invalid_request'],
    ['no messages', JSON.stringify({ model: 'test-model' }), 400, 'invalid_request'],
    ['empty messages', JSON.stringify({ model: 'test-model', messages: [] }), 400, 'invalid_request'],
    ['stream not a boolean', JSON.stringify({ model: 'test-model', messages, stream: 'yes' }), 400, 'invalid_request'],
    ['unknown model', JSON.stringify({ model: 'nope', messages }), 404, 'model_not_found'],
    ['over the body limit', JSON.stringify({ model: 'test-model', messages: [{ role: 'user', content: 'x'.repeat(5000) }] }), 413, 'request_too_large'],
  ]
  for (const [name, body, status, code] of cases) {
    const res = await post(body)
    t.equal(res.status, status, name)
    const json = (await res.json()) as { error: { code: string; message: string; type: string } }
    t.equal(json.error.code, code, name)
    t.type(json.error.message, 'string')
    t.equal(json.error.type, 'invalid_request_error')
    t.ok(res.headers.get('x-request-id'), `${name}: has a request id`)
    t.notOk(json.error.message.includes('nope'), 'messages never echo input')
  }
  const chunked = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    body: new ReadableStream({
      start(c) {
        for (let i = 0; i < 10; i++) c.enqueue(new TextEncoder().encode('x'.repeat(1000)))
        c.close()
      },
    }),
    duplex: 'half',
  } as RequestInit)
  t.equal(chunked.status, 413, 'a chunked body is cut at the limit too')
  const get = await fetch(`${url}/v1/chat/completions`)
  t.equal(get.status, 405)
  t.equal(get.headers.get('allow'), 'POST')
  const postModels = await fetch(`${url}/v1/models`, { method: 'POST', body: '{}' })
  t.equal(postModels.status, 405)
})

t.test('the request log line carries the documented fields and no body', async (t) => {
  const { url, wsUrl, logs } = await startTestService(t)
  await TestProvider.join(wsUrl, 'log-1', { handler: answer() })
  await buyer(url).chat.completions.create({ model: 'test-model', messages: [{ role: 'user', content: 'secret-prompt-text' }] })
  const line = logs.events('request.finished')[0]
  t.match(line, {
    request_id: /^req-/,
    provider_id: 'log-1',
    model: 'test-model',
    status: 'complete',
    stream: false,
    attempts: 1,
    failovers: [],
    first_chunk_ms: Number,
    duration_ms: Number,
    usage: { prompt_tokens: 5, completion_tokens: TOKENS.length, total_tokens: 5 + TOKENS.length },
  })
  t.notOk(logs.text().includes('secret-prompt-text'), 'prompts are never logged')
})

async function poolRoutable(url: string, id: string): Promise<boolean | undefined> {
  const res = await fetch(`${url}/poolz`, { headers: { authorization: `Bearer ${OPERATOR_KEY}` } })
  const body = (await res.json()) as { pool: Array<{ provider_id: string; routing_eligible: boolean }> }
  return body.pool.find((r) => r.provider_id === id)?.routing_eligible
}
