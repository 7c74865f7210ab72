import t from 'tap'
import { TokenStore } from '../../src/tokens/token-store.js'
import { ProviderClient, join, type Outcome } from '../helpers/provider-client.js'
import { startTestService } from '../helpers/service.js'

t.test('20 tokenless hellos race for one new provider_id', async (t) => {
  const s = await startTestService(t, { limits: { maxPendingPerIp: 32 } })
  // Connect all first, then send every hello at once, so the admissions really overlap.
  const clients = await Promise.all(Array.from({ length: 20 }, () => ProviderClient.connect(s.wsUrl)))
  for (const c of clients) c.hello('contested')
  const outcomes: Outcome[] = await Promise.all(clients.map((c) => c.outcome()))

  const minted = outcomes.filter((o) => o.ack?.assigned_provider_token !== undefined)
  t.equal(minted.length, 1, 'exactly one connection received a token')
  for (const o of outcomes) {
    if (o === minted[0]) continue
    const quarantined = o.ack?.auth_state === 'bearerless_duplicate' && o.ack.assigned_provider_token === undefined
    const refused = o.close?.code === 4005
    t.ok(quarantined || refused, `a loser is quarantined or closed 4005 (${JSON.stringify(o)})`)
  }

  const active = await new TokenStore(s.db).list({ activeOnly: true })
  t.equal(active.length, 1, 'exactly one active row')
  const poolz = await s.poolz()
  t.equal(poolz.pool.filter((r) => r.routing_eligible).length, 1, 'exactly one routable session')
  t.equal(poolz.pool.find((r) => r.routing_eligible)?.auth_state, 'self_minted')

  const token = minted[0]?.ack?.assigned_provider_token as string
  t.equal(active[0]?.tokenPrefix, token.slice(0, 12), "the active row is the winner's")
  const winner = clients[outcomes.indexOf(minted[0] as Outcome)] as ProviderClient
  await winner.close()
  const reconnect = await join(s.wsUrl, 'contested', { token })
  t.equal(reconnect.ack?.auth_state, 'bearer_validated', "the winner's token validates on reconnect")
})

t.test('a lost mint race against another writer is quarantined, never routed', async (t) => {
  // The unique index is the only guard: here an operator's issue wins the insert while
  // the tokenless hello is between its checks and its own insert.
  const s = await startTestService(t)
  const store = new TokenStore(s.db)
  const lock = s.svc.ctx.admissionLock
  let inserted!: () => void
  const raced = new Promise<void>((r) => (inserted = r))
  // Hold the id's admission lock, start the hello, then let another writer insert first.
  const held = lock.run('raced', () => raced)
  const pending = join(s.wsUrl, 'raced')
  const { token } = await store.issue('raced', 'ops', 'operator_issued')
  inserted()
  await held
  const r = await pending
  t.same(r.close, { code: 4005, reason: 'invalid_token' }, 'the operator-issued row is respected (TOFU)')
  t.equal((await store.list({ activeOnly: true })).length, 1)
  t.equal((await join(s.wsUrl, 'raced', { token })).ack?.auth_state, 'bearer_validated')
})
