import t from 'tap'
import { apiError, buyer } from '../helpers/buyer.js'
import { parseExposition, sampleValue } from '../helpers/prometheus.js'
import { OPERATOR_KEY, startTestService, waitFor } from '../helpers/service.js'
import { TestProvider, answer } from '../helpers/test-provider.js'

const messages = [{ role: 'user' as const, content: 'hi' }]

t.test('/metrics: the request, failover and disconnect counters move, with closed labels', async (t) => {
  const s = await startTestService(t)
  const scrape = async () => parseExposition(await (await fetch(`${s.url}/metrics`)).text())
  const before = await scrape()
  t.equal(sampleValue(before, 'poolcoord_requests_total', { status: 'complete', stream: 'false' }), 0)

  const flaky = await TestProvider.join(s.wsUrl, 'flaky-provider', { hello: { max_concurrency: 8 } })
  await TestProvider.join(s.wsUrl, 'steady-provider', { handler: answer(), hello: { max_concurrency: 2 } })
  flaky.serve(() => flaky.crash())
  const client = buyer(s.url)
  await client.chat.completions.create({ model: 'test-model', messages }) // fails over from flaky
  for await (const _ of await client.chat.completions.create({ model: 'test-model', messages, stream: true })) void _
  await apiError(client.chat.completions.create({ model: 'not-served', messages }))
  await waitFor(() => s.svc.ctx.registry.get('flaky-provider') === undefined, 'flaky removed')

  const after = await scrape()
  const v = (name: string, labels: Record<string, string> = {}) => sampleValue(after, name, labels)
  t.equal(v('poolcoord_requests_total', { status: 'complete', stream: 'false' }), 1)
  t.equal(v('poolcoord_requests_total', { status: 'complete', stream: 'true' }), 1)
  t.equal(v('poolcoord_requests_total', { status: 'model_not_found', stream: 'false' }), 1)
  t.equal(v('poolcoord_failovers_total', { reason: 'disconnect' }), 1)
  t.equal(v('poolcoord_provider_disconnects_total', { phase: 'before_first_chunk' }), 1)
  t.equal(v('poolcoord_request_duration_seconds_count', { stream: 'false' }), 2)
  t.equal(v('poolcoord_request_duration_seconds_count', { stream: 'true' }), 1)
  t.equal(v('poolcoord_first_chunk_seconds_count', { stream: 'false' }), 1)
  t.equal(v('poolcoord_first_chunk_seconds_count', { stream: 'true' }), 1)
  t.ok(v('poolcoord_request_duration_seconds_sum', { stream: 'true' }) > 0)
  t.equal(v('poolcoord_requests_in_flight'), 0)
  t.equal(v('poolcoord_pool_sessions', { auth_state: 'self_minted', routable: 'true' }), 1)
  t.equal(v('poolcoord_admissions_total', { outcome: 'minted' }), 2)

  const values = new Set(after.flatMap((x) => Object.values(x.labels)))
  for (const leak of ['flaky-provider', 'steady-provider', 'test-model', 'not-served']) t.notOk(values.has(leak), `${leak} is not a label value`)
  t.notOk(
    [...values].some((x) => x.startsWith('req-')),
    'no request id is a label value',
  )
})

t.test('COORD_METRICS_REQUIRE_KEY=true puts /metrics behind the operator key', async (t) => {
  const s = await startTestService(t, { env: { metricsRequireKey: 'true' } })
  t.equal((await fetch(`${s.url}/metrics`)).status, 401)
  t.equal((await fetch(`${s.url}/metrics`, { headers: { authorization: 'Bearer wrong-key-0123456789abcdef' } })).status, 401)
  const ok = await fetch(`${s.url}/metrics`, { headers: { authorization: `Bearer ${OPERATOR_KEY}` } })
  t.equal(ok.status, 200)
  t.match(await ok.text(), /poolcoord_requests_in_flight 0/)
})
