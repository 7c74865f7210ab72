import t from 'tap'
import { TokenStore } from '../../src/tokens/token-store.js'
import { ProviderClient, join } from '../helpers/provider-client.js'
import { startTestService, waitFor } from '../helpers/service.js'

t.test('tokenless newcomer is minted a token and proves it on reconnect', async (t) => {
  const s = await startTestService(t)
  const first = await join(s.wsUrl, 'mac-1')
  t.equal(first.ack?.auth_state, 'self_minted')
  const token = first.ack?.assigned_provider_token as string
  t.match(token, /^[0-9a-f]{64}$/)
  t.equal((await s.poolz()).pool[0]?.routing_eligible, true, 'a self-minted session is routable')
  await first.client.close()
  await waitFor(async () => (await s.poolz()).summary.total === 0, 'session removal')

  const again = await join(s.wsUrl, 'mac-1', { token })
  t.equal(again.ack?.auth_state, 'bearer_validated')
  t.notOk('assigned_provider_token' in (again.ack ?? {}), 'no token on a bearer admission')
  const [row] = await new TokenStore(s.db).list()
  t.ok(row?.lastUsedAt, 'the reconnect proved the token')
  t.equal((await s.poolz()).pool[0]?.auth_state, 'bearer_validated')
})

t.test('self-heal: an unproven token is replaced when its holder is gone', async (t) => {
  const s = await startTestService(t)
  const first = await join(s.wsUrl, 'old-binary')
  const lost = first.ack?.assigned_provider_token as string
  await first.client.close() // an old binary that never stored the token
  await waitFor(async () => (await s.poolz()).summary.total === 0, 'session removal')

  const healed = await join(s.wsUrl, 'old-binary')
  t.equal(healed.ack?.auth_state, 'self_minted')
  const fresh = healed.ack?.assigned_provider_token as string
  t.match(fresh, /^[0-9a-f]{64}$/)
  t.not(fresh, lost)
  t.equal(s.logs.events('admission.self_heal').length, 1)
  await healed.client.close()

  const stale = await join(s.wsUrl, 'old-binary', { token: lost })
  t.same(stale.close, { code: 4005, reason: 'invalid_token' }, 'the old token stopped validating')
  const ok = await join(s.wsUrl, 'old-binary', { token: fresh })
  t.equal(ok.ack?.auth_state, 'bearer_validated')
})

t.test('TOFU: a tokenless claim on a proven identity is rejected and the token stays valid', async (t) => {
  const s = await startTestService(t)
  const first = await join(s.wsUrl, 'proven')
  const token = first.ack?.assigned_provider_token as string
  await first.client.close()
  const proof = await join(s.wsUrl, 'proven', { token })
  t.equal(proof.ack?.auth_state, 'bearer_validated')
  await proof.client.close()
  await waitFor(async () => (await s.poolz()).summary.total === 0, 'session removal')

  const claim = await join(s.wsUrl, 'proven')
  t.same(claim.close, { code: 4005, reason: 'invalid_token' })
  t.equal(s.logs.events('admission.tofu_reject').length, 1)
  t.equal((await s.poolz()).summary.total, 0, 'nothing entered the pool')
  const back = await join(s.wsUrl, 'proven', { token })
  t.equal(back.ack?.auth_state, 'bearer_validated', 'the owner is unaffected')
})

t.test('an unused operator-issued token is never self-healed away', async (t) => {
  const s = await startTestService(t)
  const issued = await new TokenStore(s.db).issue('invited', 'gpu-box', 'operator_issued')
  const claim = await join(s.wsUrl, 'invited')
  t.same(claim.close, { code: 4005, reason: 'invalid_token' })
  const owner = await join(s.wsUrl, 'invited', { token: issued.token })
  t.equal(owner.ack?.auth_state, 'bearer_validated')
})

t.test('a bearer bound to another provider_id is refused', async (t) => {
  const s = await startTestService(t)
  const { token } = await new TokenStore(s.db).issue('alice', 'a', 'operator_issued')
  const r = await join(s.wsUrl, 'bob', { token })
  t.same(r.close, { code: 4005, reason: 'invalid_token' })
  t.equal(s.logs.events('admission.binding_mismatch').length, 1)
  t.equal((await s.poolz()).summary.total, 0)
})

t.test('invalid, malformed, revoked and query-string tokens close 4005', async (t) => {
  const s = await startTestService(t)
  const store = new TokenStore(s.db)
  const { token } = await store.issue('p', 'p', 'operator_issued')
  const cases: Array<[string, { token?: string; authorization?: string; query?: string }]> = [
    ['unknown token', { token: 'a'.repeat(64) }],
    ['malformed header', { authorization: 'Bearer not-a-token' }],
    ['wrong scheme', { authorization: `Basic ${token}` }],
    ['token in the query string', { query: `?token=${token}` }],
  ]
  for (const [name, opts] of cases) {
    const c = await ProviderClient.connect(s.wsUrl, opts)
    c.hello('p')
    t.same((await c.outcome()).close, { code: 4005, reason: 'invalid_token' }, name)
  }
  t.equal((await store.list())[0]?.lastUsedAt, null, 'a query-string token is not even looked up')
  await store.revoke(token)
  t.same((await join(s.wsUrl, 'p', { token })).close, { code: 4005, reason: 'invalid_token' }, 'revoked token')
})

t.test('COORD_REQUIRE_PROVIDER_TOKENS is read live on every upgrade', async (t) => {
  const s = await startTestService(t, { requireProviderTokens: true })
  const { token } = await new TokenStore(s.db).issue('keyed', 'k', 'operator_issued')
  t.same((await join(s.wsUrl, 'newbie')).close, { code: 4005, reason: 'invalid_token' })
  t.equal(s.logs.events('admission.tokens_required').length, 1)
  const keyed = await join(s.wsUrl, 'keyed', { token })
  t.equal(keyed.ack?.auth_state, 'bearer_validated', 'a bearer is still admitted')

  s.svc.ctx.live.set({ ...s.svc.ctx.live.get(), requireProviderTokens: false })
  const open = await join(s.wsUrl, 'newbie')
  t.equal(open.ack?.auth_state, 'self_minted', 'the next upgrade sees the new setting')
  t.equal((await s.poolz()).summary.total, 2, 'existing sessions were left alone')
})
