import t from 'tap'
import { TokenStore } from '../../src/tokens/token-store.js'
import { generateIdentityKey, keyJoin, openKeyHandshake, proofFor } from '../helpers/key-client.js'
import { join } from '../helpers/provider-client.js'
import { startTestService, waitFor } from '../helpers/service.js'

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

t.test('identity v2 fails closed too: a store outage between the challenge and the proof, and at the upgrade', async (t) => {
  const s = await startTestService(t)
  const key = generateIdentityKey()
  const enrolled = await keyJoin(s.wsUrl, 'keyed-v2', key, { intent: 'enroll' })
  const token = enrolled.ack?.assigned_provider_token as string
  await enrolled.client.close()
  await waitFor(async () => (await s.poolz()).summary.total === 0, 'gone')

  const recovering = await openKeyHandshake(s.wsUrl, 'keyed-v2', key, { intent: 'recover' })
  t.ok(recovering.challenge, 'challenged while the store was up')
  await s.db.close()
  recovering.client.send(proofFor(recovering, 'keyed-v2', key, 'recover', null))
  t.same((await recovering.client.outcome()).close, { code: 4005, reason: 'invalid_token' }, 'a valid proof cannot be acted on: 4005')
  const enrolling = await keyJoin(s.wsUrl, 'new-v2', generateIdentityKey(), { intent: 'enroll' })
  t.same(enrolling.close, { code: 4005, reason: 'invalid_token' }, 'a tokenless auth_init cannot learn key_state: 4005 before any challenge')
  t.equal(enrolling.challenge, null)
  const bearer = await keyJoin(s.wsUrl, 'keyed-v2', key, { intent: 'connect', token })
  t.same(bearer.close, { code: 4005, reason: 'invalid_token' }, 'the bearer cannot be validated')
  t.ok(s.logs.events('admission.store_error').length >= 3)
  t.equal((await s.poolz()).summary.total, 0, 'nothing entered the pool')
})
