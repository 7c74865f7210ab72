import t from 'tap'
import { buyer } from '../helpers/buyer.js'
import { OPERATOR_KEY, startTestService, waitFor } from '../helpers/service.js'
import { TestProvider, answer } from '../helpers/test-provider.js'

const messages = [{ role: 'user' as const, content: 'hi' }]
const auth = { authorization: `Bearer ${OPERATOR_KEY}` }

t.test('admin drain: no new work at once, whatever heartbeats say; closed 1000 after its last request', async (t) => {
  const s = await startTestService(t)
  const a = await TestProvider.join(s.wsUrl, 'drain-me', { hello: { max_concurrency: 8 } })
  const b = await TestProvider.join(s.wsUrl, 'other', { handler: answer(), hello: { max_concurrency: 2 } })
  const inFlight = buyer(s.url).chat.completions.create({ model: 'test-model', messages })
  await a.request(0)
  const frames: string[] = []
  a.client.ws.on('message', (d) => frames.push(JSON.parse(d.toString()).type as string))
  const res = await fetch(`${s.url}/admin/providers/drain-me/drain`, { method: 'POST', headers: auth })
  t.equal(res.status, 202)
  t.match(await res.json(), { provider_id: 'drain-me', action: 'drain', in_flight: 1 })
  await waitFor(() => frames.includes('drain'), 'the drain frame')
  a.heartbeat('ready', 8, 8) // a provider that ignores the drain cannot undo it
  await waitFor(async () => (await s.poolz()).pool.find((r) => r.provider_id === 'drain-me')?.routing_ineligible_reason === 'draining', 'draining in /poolz')
  for (let i = 0; i < 3; i++) {
    const { response } = await buyer(s.url).chat.completions.create({ model: 'test-model', messages }).withResponse()
    t.equal(response.headers.get('x-pool-provider'), 'other')
  }
  t.equal(a.requests.length, 1, 'nothing new reached the draining provider')
  t.equal(a.client.ws.readyState, a.client.ws.OPEN, 'still open while its request runs')
  answer(['finished'])(await a.request(0), a)
  t.equal((await inFlight).choices[0]?.message.content, 'finished', 'the in-flight request completed')
  t.same(await a.client.closed, { code: 1000, reason: 'drained' })
  t.equal(b.requests.length, 3)
})

t.test('admin kick: closed 4007 at once; its in-flight request fails over', async (t) => {
  const s = await startTestService(t)
  const a = await TestProvider.join(s.wsUrl, 'kick-me', { hello: { max_concurrency: 8 } })
  await TestProvider.join(s.wsUrl, 'backup', { handler: answer(), hello: { max_concurrency: 2 } })
  const pending = buyer(s.url).chat.completions.create({ model: 'test-model', messages }).withResponse()
  await a.request(0)
  const res = await fetch(`${s.url}/admin/providers/kick-me/kick`, { method: 'POST', headers: auth })
  t.equal(res.status, 200)
  t.match(await res.json(), { provider_id: 'kick-me', action: 'kick', in_flight: 1 })
  t.same(await a.client.closed, { code: 4007, reason: 'kicked' })
  const { response } = await pending
  t.equal(response.headers.get('x-pool-provider'), 'backup')
  t.equal(s.svc.ctx.registry.get('kick-me'), undefined)
})

t.test('admin endpoints: operator key, 404 for unknown or malformed ids, POST only', async (t) => {
  const s = await startTestService(t)
  await TestProvider.join(s.wsUrl, 'present')
  for (const action of ['drain', 'kick']) {
    t.equal((await fetch(`${s.url}/admin/providers/present/${action}`, { method: 'POST' })).status, 401, `${action}: no key`)
    t.equal(
      (await fetch(`${s.url}/admin/providers/present/${action}`, { method: 'POST', headers: { authorization: 'Bearer wrong-wrong-wrong-wrong' } })).status,
      401,
    )
    t.equal((await fetch(`${s.url}/admin/providers/absent/${action}`, { method: 'POST', headers: auth })).status, 404, `${action}: unknown`)
    t.equal((await fetch(`${s.url}/admin/providers/bad%20id/${action}`, { method: 'POST', headers: auth })).status, 404, `${action}: malformed`)
    t.equal((await fetch(`${s.url}/admin/providers/present/${action}`, { headers: auth })).status, 405, `${action}: GET`)
  }
  t.equal((await fetch(`${s.url}/admin/providers/present/explode`, { method: 'POST', headers: auth })).status, 404)
  t.ok(s.svc.ctx.registry.get('present'), 'nothing happened to it')
})

t.test('drainAndStop in process: new work refused, in-flight finished, sockets closed 1001', async (t) => {
  const s = await startTestService(t)
  const p = await TestProvider.join(s.wsUrl, 'worker', { hello: { max_concurrency: 2 } })
  const pending = buyer(s.url).chat.completions.create({ model: 'test-model', messages })
  const req = await p.request(0)
  const stopped = s.svc.drainAndStop(10_000)
  await waitFor(async () => (await fetch(`${s.url}/healthz`)).status === 503, 'draining')
  const upgrade = await TestProvider.join(s.wsUrl, 'latecomer').catch((e: unknown) => e)
  t.match(upgrade, { message: 'upgrade refused: 503' }, 'no new provider upgrades')
  const refused = await fetch(`${s.url}/v1/models`)
  t.equal(refused.status, 503)
  answer()(req, p)
  t.ok((await pending).choices[0], 'the in-flight request completed')
  await stopped
  t.same(await p.client.closed, { code: 1001, reason: 'shutting_down' })
  t.match(s.logs.events('coordinator.drained')[0], { outcome: 'idle', cut: 0 })
})
