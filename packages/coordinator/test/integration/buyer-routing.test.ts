import { responseChunk } from '@poolcoord/protocol'
import t from 'tap'
import { apiError, buyer } from '../helpers/buyer.js'
import { join } from '../helpers/provider-client.js'
import { startTestService, waitFor, type TestService } from '../helpers/service.js'
import { TestProvider, answer, type InferenceRequest } from '../helpers/test-provider.js'

const messages = [{ role: 'user' as const, content: 'hi' }]

/**
 * Puts a `bearerless_duplicate` session into the pool the only way the admission machine makes
 * one: a tokenless claim loses the mint race to a live self-minted session (specs/admission.md
 * §3 row 6) and that session is gone by the time the loser registers. The test holds the token
 * table locked so the loser's INSERT waits while the winner disconnects: the race, made
 * deterministic, with every part real.
 */
async function quarantinedDuplicate(s: TestService, id: string): Promise<TestProvider> {
  const winner = await join(s.wsUrl, id, { hello: { model_id: 'test-model' } })
  if (winner.ack?.auth_state !== 'self_minted') throw new Error('winner was not self-minted')
  let releaseLock!: () => void
  let lockHeld!: () => void
  const held = new Promise<void>((r) => (lockHeld = r))
  const tx = s.db.rawTransaction(async (q) => {
    await q.exec('LOCK TABLE provider_tokens IN SHARE MODE')
    lockHeld()
    await new Promise<void>((r) => (releaseLock = r))
  })
  await held
  const loser = TestProvider.join(s.wsUrl, id)
  await waitFor(() => s.svc.ctx.admissionLock.size === 1, "the loser's admission to wait on the store")
  await winner.client.close()
  await waitFor(() => s.svc.ctx.registry.get(id) === undefined, 'the winner to leave the pool')
  releaseLock()
  await tx
  const dup = await loser
  if (dup.ack.auth_state !== 'bearerless_duplicate') throw new Error(`loser admitted as ${dup.ack.auth_state}`)
  return dup
}

t.test('a quarantined duplicate and a self-minted draining provider never receive a request', async (t) => {
  const s = await startTestService(t)
  const dup = await quarantinedDuplicate(s, 'dup-1')
  const draining = await TestProvider.join(s.wsUrl, 'drain-1')
  t.equal(draining.ack.auth_state, 'self_minted')
  draining.heartbeat('draining')
  await waitFor(async () => (await s.poolz()).pool.find((r) => r.provider_id === 'drain-1')?.status === 'draining', 'drain')
  const rows = (await s.poolz()).pool
  t.match(
    rows.find((r) => r.provider_id === 'dup-1'),
    { auth_state: 'bearerless_duplicate', routing_eligible: false, status: 'ready' },
  )
  t.match(
    rows.find((r) => r.provider_id === 'drain-1'),
    { auth_state: 'self_minted', routing_eligible: false },
  )

  const client = buyer(s.url)
  for (let i = 0; i < 5; i++) {
    const err = await apiError(client.chat.completions.create({ model: 'test-model', messages }))
    t.equal(err.code, 'no_provider_available', `request ${i} finds nobody to serve it`)
  }
  for (const pin of ['dup-1', 'drain-1']) {
    const err = await apiError(client.chat.completions.create({ model: 'test-model', messages }, { headers: { 'X-Pool-Provider': pin } }))
    t.equal(err.status, 503, `pinning ${pin} does not bypass the rule`)
  }
  t.same((await client.models.list()).data, [], '/v1/models counts neither')

  const healthy = await TestProvider.join(s.wsUrl, 'healthy-1', { handler: answer(), hello: { max_concurrency: 1 } })
  for (let i = 0; i < 5; i++) {
    const { response } = await client.chat.completions.create({ model: 'test-model', messages }).withResponse()
    t.equal(response.headers.get('x-pool-provider'), 'healthy-1')
  }
  t.equal(dup.requests.length, 0, 'the duplicate got nothing')
  t.equal(draining.requests.length, 0, 'the draining provider got nothing')
  t.equal(healthy.requests.length, 5)
})

t.test('concurrent requests spread across providers and never exceed max_concurrency', async (t) => {
  const s = await startTestService(t)
  const held: Array<{ p: TestProvider; req: InferenceRequest }> = []
  const hold = (req: InferenceRequest, p: TestProvider) => void held.push({ p, req })
  const providers = await Promise.all(['c-1', 'c-2', 'c-3'].map((id) => TestProvider.join(s.wsUrl, id, { handler: hold, hello: { max_concurrency: 2 } })))
  const client = buyer(s.url)
  // Six requests for six slots, all held open by the providers: every slot is taken.
  const first = Array.from({ length: 6 }, () => client.chat.completions.create({ model: 'test-model', messages }).withResponse())
  await waitFor(() => held.length === 6, 'six dispatches')
  t.same(
    providers.map((p) => p.active),
    [2, 2, 2],
    'spread: two each, never packed',
  )
  const seventh = await apiError(client.chat.completions.create({ model: 'test-model', messages }))
  t.equal(seventh.code, 'no_provider_available', 'a full pool refuses rather than overloading anyone')
  for (const { p, req } of held.splice(0)) answer()(req, p)
  const served = await Promise.all(first)
  t.same(
    served.map((r) => r.response.status),
    [200, 200, 200, 200, 200, 200],
  )

  // Now a burst four times the pool's capacity, answered as it arrives.
  for (const p of providers) p.serve((req, prov) => void setImmediate(() => answer()(req, prov)))
  const burst = await Promise.allSettled(Array.from({ length: 24 }, () => client.chat.completions.create({ model: 'test-model', messages })))
  const ok = burst.filter((r) => r.status === 'fulfilled').length
  t.ok(ok >= 6, `${ok} of the burst were served`)
  for (const r of burst) {
    if (r.status === 'rejected') t.equal((r.reason as { code?: string }).code, 'no_provider_available', 'the rest were refused, not failed')
  }
  for (const p of providers) {
    t.ok(p.maxActive <= 2, `${p.id} never held more than its max_concurrency (max ${p.maxActive})`)
    t.ok(p.requests.length >= 3, `${p.id} took a share (${p.requests.length})`)
  }
  t.equal(s.svc.ctx.dispatcher.inFlight, 0)
  for (const p of providers) t.equal(s.svc.ctx.registry.get(p.id)?.inFlight, 0)
})

t.test("attack: a provider cannot write into or end another provider's request", async (t) => {
  const s = await startTestService(t)
  const victim = await TestProvider.join(s.wsUrl, 'victim', { hello: { max_concurrency: 8 } })
  const attacker = await TestProvider.join(s.wsUrl, 'attacker', { hello: { max_concurrency: 1, model_id: 'other-model' } })
  const pending = buyer(s.url).chat.completions.create({ model: 'test-model', messages }).withResponse()
  const req = await victim.request()
  // The attacker learns (or guesses) the request id and races the victim's answer.
  attacker.chunk(req.request_id, '{"injected":true}')
  attacker.end(req.request_id, 'error_internal')
  answer(['genuine'])(req, victim)
  const { data, response } = await pending
  t.equal(data.choices[0]?.message.content, 'genuine')
  t.equal(response.headers.get('x-pool-provider'), 'victim')
  t.equal(attacker.client.ws.readyState, attacker.client.ws.OPEN, 'foreign frames are ignored, as late frames are')
})

t.test('a chunk that breaks seq order closes the offending session (4003) and the request fails over', async (t) => {
  const s = await startTestService(t)
  const bad = await TestProvider.join(s.wsUrl, 'bad-seq', { hello: { max_concurrency: 8 } })
  const good = await TestProvider.join(s.wsUrl, 'good-seq', { handler: answer(), hello: { max_concurrency: 1 } })
  bad.serve((req, p) => {
    p.client.send(responseChunk(req.request_id, 0, '{"a":'))
    p.client.send(responseChunk(req.request_id, 0, '1}'))
  })
  const { response } = await buyer(s.url).chat.completions.create({ model: 'test-model', messages }).withResponse()
  t.equal(response.headers.get('x-pool-provider'), 'good-seq', 'non-streaming: nothing had reached the buyer, so it failed over')
  t.same(await bad.client.closed, { code: 4003, reason: 'invalid_frame: seq' })
  t.equal(good.requests.length, 1)
})
