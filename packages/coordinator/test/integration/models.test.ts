import t from 'tap'
import { apiError, buyer } from '../helpers/buyer.js'
import { OPERATOR_KEY, startTestService, waitFor } from '../helpers/service.js'
import { TestProvider, answer } from '../helpers/test-provider.js'

const auth = { authorization: `Bearer ${OPERATOR_KEY}` }
type Json = Record<string, unknown>

async function get(url: string): Promise<{ status: number; body: Json; res: Response }> {
  const res = await fetch(url)
  return { status: res.status, body: (await res.json()) as Json, res }
}

t.test('GET /v1/models/{id}: the entry of the list, through fetch and the openai client', async (t) => {
  const { url, wsUrl } = await startTestService(t)
  await TestProvider.join(wsUrl, 'r-1', { hello: { model_id: 'alpha', supported_models: ['beta'], max_concurrency: 2, max_context_tokens: 4096 } })
  await TestProvider.join(wsUrl, 'r-2', { hello: { model_id: 'alpha', max_concurrency: 3, max_context_tokens: 32768 } })
  const list = (await get(`${url}/v1/models`)).body as { data: Json[] }
  for (const id of ['alpha', 'beta']) {
    const one = await get(`${url}/v1/models/${id}`)
    t.equal(one.status, 200, id)
    t.equal(one.res.headers.get('cache-control'), 'no-store')
    t.same(
      one.body,
      list.data.find((m) => m.id === id),
      `${id}: exactly its entry in GET /v1/models`,
    )
  }
  t.match((await get(`${url}/v1/models/alpha`)).body, { id: 'alpha', object: 'model', owned_by: 'poolcoord', provider_count: 2, total_slots: 5 })
  const viaSdk = await buyer(url).models.retrieve('beta')
  t.match(viaSdk, { id: 'beta', object: 'model', owned_by: 'poolcoord' })
  t.equal((await fetch(`${url}/v1/models/alpha?x=1`)).status, 200, 'a query string is not part of the id')
  t.equal((await fetch(`${url}/v1/models/alpha`, { method: 'HEAD' })).status, 200)
  const post = await fetch(`${url}/v1/models/alpha`, { method: 'POST' })
  t.equal(post.status, 405)
  t.equal(post.headers.get('allow'), 'GET')
})

t.test('an unknown model is 404 model_not_found, with the envelope', async (t) => {
  const { url, wsUrl } = await startTestService(t)
  await TestProvider.join(wsUrl, 'r-1', { hello: { model_id: 'alpha' } })
  for (const id of ['gamma', 'Alpha', 'alpha/', 'alpha%20']) {
    const res = await get(`${url}/v1/models/${id}`)
    t.equal(res.status, 404, id)
    t.same(res.body, { error: { message: 'no provider in the pool serves this model', type: 'invalid_request_error', code: 'model_not_found' } })
  }
  const err = await apiError(buyer(url).models.retrieve('gamma'))
  t.equal(err.status, 404)
  t.equal(err.code, 'model_not_found')
  const empty = await get(`${url}/v1/models/`)
  t.equal(empty.status, 404, 'no id: no such route')
  t.match(empty.body, { error: { code: 'COORD_NOT_FOUND' } })
})

t.test('ids with / and :, raw or percent-encoded; bounds', async (t) => {
  const { url, wsUrl } = await startTestService(t)
  const long = 'é'.repeat(6) + 'x'.repeat(250)
  await TestProvider.join(wsUrl, 'r-1', { hello: { model_id: 'meta-llama/Llama-3-8B', supported_models: ['llama3:8b', 'a b', long] } })
  const cases: Array<[string, string]> = [
    ['meta-llama/Llama-3-8B', 'a raw slash'],
    ['meta-llama%2FLlama-3-8B', 'an encoded slash'],
    ['meta-llama%2fLlama-3-8B', 'lowercase hex'],
    ['llama3:8b', 'a raw colon'],
    ['llama3%3A8b', 'an encoded colon'],
    ['a%20b', 'an encoded space'],
    [encodeURIComponent(long), '256 characters, UTF-8 encoded'],
  ]
  for (const [path, what] of cases) {
    const res = await get(`${url}/v1/models/${path}`)
    t.equal(res.status, 200, what)
    t.equal(res.body.id, decodeURIComponent(path), what)
  }
  const sdk = buyer(url)
  t.equal((await sdk.models.retrieve('meta-llama/Llama-3-8B')).id, 'meta-llama/Llama-3-8B', 'the openai client')
  t.equal((await sdk.models.retrieve('llama3:8b')).id, 'llama3:8b')

  const refused: Array<[string, string]> = [
    [encodeURIComponent(long + 'y'), '257 characters'],
    ['x'.repeat(257), '257 raw characters'],
    ['%'.repeat(3000), 'an encoded form longer than any id'],
    ['%E0%A4%A', 'a truncated escape'],
    ['%ZZ', 'not hex'],
    ['%C3%28', 'invalid UTF-8'],
    ['alpha%00', 'a control character'],
    ['meta-llama%252FLlama-3-8B', 'decoded once, not twice'],
  ]
  for (const [path, what] of refused) {
    const res = await get(`${url}/v1/models/${path}`)
    t.equal(res.status, 404, what)
    t.match(res.body, { error: { code: 'model_not_found' } }, what)
  }
})

t.test('a model whose only provider is not routable is 404, as in the list', async (t) => {
  const s = await startTestService(t)
  const busy = await TestProvider.join(s.wsUrl, 'only-beta', { hello: { model_id: 'beta' } })
  await TestProvider.join(s.wsUrl, 'only-gamma', { hello: { model_id: 'gamma' } })
  t.equal((await get(`${s.url}/v1/models/beta`)).status, 200)
  busy.heartbeat('draining')
  await waitFor(async () => (await fetch(`${s.url}/v1/models/beta`)).status === 404, 'beta leaves with its draining provider')
  t.match((await get(`${s.url}/v1/models/beta`)).body, { error: { code: 'model_not_found' } })
  const cordon = await fetch(`${s.url}/admin/providers/only-gamma/cordon`, { method: 'POST', headers: auth })
  t.equal(cordon.status, 200)
  t.equal((await get(`${s.url}/v1/models/gamma`)).status, 404, 'a cordoned provider puts nothing on the list')
  t.same((await get(`${s.url}/v1/models`)).body, { object: 'list', data: [] })
})

t.test('refused with 503 coordinator_draining while the coordinator drains', async (t) => {
  const s = await startTestService(t)
  const p = await TestProvider.join(s.wsUrl, 'worker', { hello: { model_id: 'alpha', max_concurrency: 2 } })
  // A request in flight holds the drain open long enough to ask.
  const pending = buyer(s.url).chat.completions.create({ model: 'alpha', messages: [{ role: 'user', content: 'hi' }] })
  const req = await p.request(0)
  const stopped = s.svc.drainAndStop(10_000)
  await waitFor(async () => (await fetch(`${s.url}/healthz`)).status === 503, 'draining')
  const refused = await get(`${s.url}/v1/models/alpha`)
  t.equal(refused.status, 503)
  t.equal(refused.res.headers.get('retry-after'), '5')
  t.match(refused.body, { error: { code: 'coordinator_draining', type: 'server_error' } })
  t.equal((await get(`${s.url}/v1/models/unknown`)).status, 503, 'before any lookup')
  answer()(req, p)
  await pending
  await stopped
})
