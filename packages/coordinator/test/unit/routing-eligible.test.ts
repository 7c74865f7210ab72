import t from 'tap'
import type { AuthState, ProviderStatus } from '@poolcoord/protocol'
import { effectiveFreeSlots, routingEligible, type Eligibility } from '../../src/pool/routing-eligible.js'

const ELIGIBLE: Eligibility = { eligible: true }
const quarantined: Eligibility = { eligible: false, reason: 'quarantined_duplicate' }
const notReady: Eligibility = { eligible: false, reason: 'not_ready' }
const noSlots: Eligibility = { eligible: false, reason: 'no_free_slots' }

/** name, auth state, status, reported free slots, max_concurrency, in flight → effective free slots, eligibility */
type Row = [string, AuthState, ProviderStatus, number, number, number, number, Eligibility]

// prettier-ignore
const cases: Row[] = [
  ['bearer_validated, ready, free slots', 'bearer_validated', 'ready', 4, 4, 0, 4, ELIGIBLE],
  ['self_minted, ready, free slots', 'self_minted', 'ready', 4, 4, 0, 4, ELIGIBLE],
  ['bearerless_duplicate with free slots is never eligible', 'bearerless_duplicate', 'ready', 4, 4, 0, 4, quarantined],
  ['bearerless_duplicate, busy: quarantine is the reason', 'bearerless_duplicate', 'busy', 0, 4, 4, 0, quarantined],
  ['bearer_validated, busy', 'bearer_validated', 'busy', 4, 4, 0, 4, notReady],
  ['bearer_validated, draining', 'bearer_validated', 'draining', 4, 4, 0, 4, notReady],
  ['bearer_validated, degraded', 'bearer_validated', 'degraded', 4, 4, 0, 4, notReady],
  ['bearer_validated, unavailable', 'bearer_validated', 'unavailable', 4, 4, 0, 4, notReady],
  ['self_minted, draining', 'self_minted', 'draining', 2, 2, 0, 2, notReady],
  ['self_minted, degraded with no slots: status is the reason', 'self_minted', 'degraded', 0, 2, 2, 0, notReady],
  ['ready but provider reports 0 free', 'bearer_validated', 'ready', 0, 4, 0, 0, noSlots],
  ['in-flight caps reported free slots', 'bearer_validated', 'ready', 4, 2, 2, 0, noSlots],
  ['in-flight leaves one slot', 'self_minted', 'ready', 4, 4, 3, 1, ELIGIBLE],
  ['report lower than concurrency headroom wins', 'bearer_validated', 'ready', 1, 8, 2, 1, ELIGIBLE],
  ['in-flight above maxConcurrency never goes negative', 'bearer_validated', 'ready', 4, 2, 5, 0, noSlots],
  ['negative reported free slots clamp to 0', 'bearer_validated', 'ready', -3, 2, 0, 0, noSlots],
]

t.test('routingEligible and effectiveFreeSlots', async (t) => {
  for (const [name, authState, status, slotsFree, maxConcurrency, inFlight, freeSlots, expected] of cases) {
    const facts = { authState, status, slotsFree, maxConcurrency, inFlight }
    t.equal(effectiveFreeSlots(facts), freeSlots, `${name}: effectiveFreeSlots`)
    t.strictSame(routingEligible(facts), expected, `${name}: eligibility`)
  }
})

t.test('every non-ready status is not_ready, every non-routable auth state is quarantined', async (t) => {
  const statuses: ProviderStatus[] = ['ready', 'busy', 'draining', 'degraded', 'unavailable']
  const authStates: AuthState[] = ['bearer_validated', 'self_minted', 'bearerless_duplicate']
  let eligibleCount = 0
  for (const authState of authStates) {
    for (const status of statuses) {
      const r = routingEligible({ authState, status, slotsFree: 8, maxConcurrency: 8, inFlight: 0 })
      if (authState === 'bearerless_duplicate') t.strictSame(r, quarantined, `${authState}/${status}`)
      else if (status !== 'ready') t.strictSame(r, notReady, `${authState}/${status}`)
      else t.strictSame(r, ELIGIBLE, `${authState}/${status}`)
      if (r.eligible) eligibleCount++
    }
  }
  t.equal(eligibleCount, 2, 'only bearer_validated/ready and self_minted/ready are eligible')
})

t.test('a drain the coordinator asked for wins over a ready heartbeat', async (t) => {
  const { makeSession } = await import('../helpers/fixtures.js')
  t.same(routingEligible(makeSession({ drainRequested: true })), { eligible: false, reason: 'draining' })
  t.same(routingEligible(makeSession({ drainRequested: true, authState: 'bearerless_duplicate' })), { eligible: false, reason: 'quarantined_duplicate' })
  t.same(routingEligible(makeSession({ drainRequested: false })), { eligible: true })
})

t.test("an operator's cordon outranks drain, status and slots; quarantine still comes first", async (t) => {
  const { makeSession } = await import('../helpers/fixtures.js')
  const cordoned = { eligible: false, reason: 'cordoned' }
  t.same(routingEligible(makeSession({ cordoned: true })), cordoned)
  t.same(routingEligible(makeSession({ cordoned: true, drainRequested: true, status: 'busy', slotsFree: 0 })), cordoned)
  t.same(routingEligible(makeSession({ cordoned: true, authState: 'bearerless_duplicate' })), { eligible: false, reason: 'quarantined_duplicate' })
  t.same(routingEligible(makeSession({ cordoned: false })), { eligible: true })
})
