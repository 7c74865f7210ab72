import t from 'tap'
import { TokenStore } from '../../src/tokens/token-store.js'
import { join } from '../helpers/provider-client.js'
import { startTestService } from '../helpers/service.js'

t.test('a store outage mid-run: admissions close 4005, nothing becomes routable, the process keeps serving', async (t) => {
  const s = await startTestService(t)
  const { token } = await new TokenStore(s.db).issue('keyed', 'k', 'operator_issued')
  const before = await join(s.wsUrl, 'serving')
  t.equal(before.ack?.auth_state, 'self_minted')

  await s.db.close() // the store goes away underneath the running coordinator

  const tokenless = await join(s.wsUrl, 'newcomer')
  t.same(tokenless.close, { code: 4005, reason: 'invalid_token' }, 'a tokenless hello fails closed')
  const bearer = await join(s.wsUrl, 'keyed', { token })
  t.same(bearer.close, { code: 4005, reason: 'invalid_token' }, 'a bearer cannot be validated, so it fails closed')
  t.ok(s.logs.events('admission.store_error').length >= 2, 'both are logged as store errors')

  const poolz = await s.poolz()
  t.same(
    poolz.pool.map((r) => r.provider_id),
    ['serving'],
    'nothing new entered the pool',
  )
  const health = await fetch(`${s.url}/healthz`)
  t.equal(health.status, 200, 'the process is still up and answering')
  t.equal(before.client.ws.readyState, before.client.ws.OPEN, 'the existing session was left alone')
})
