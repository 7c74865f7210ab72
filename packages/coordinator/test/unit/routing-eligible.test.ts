import t from 'tap'
import type { AuthState } from '@poolcoord/protocol'
import type { ProviderStatus } from '@poolcoord/protocol'
import { effectiveFreeSlots, routingEligible, type Eligibility } from '../../src/pool/routing-eligible.js'

interface Case {
  name: string
  authState: AuthState
  status: ProviderStatus
  slotsFree: number
  maxConcurrency: number
  inFlight: number
  freeSlots: number
  expected: Eligibility
}

const ELIGIBLE: Eligibility = { eligible: true }
const quarantined: Eligibility = { eligible: false, reason: 'quarantined_duplicate' }
const notReady: Eligibility = { eligible: false, reason: 'not_ready' }
const noSlots: Eligibility = { eligible: false, reason: 'no_free_slots' }

const cases: Case[] = [
  { name: 'bearer_validated, ready, free slots', authState: 'bearer_validated', status: 'ready', slotsFree: 4, maxConcurrency: 4, inFlight: 0, freeSlots: 4, expected: ELIGIBLE },
  { name: 'self_minted, ready, free slots', authState: 'self_minted', status: 'ready', slotsFree: 4, maxConcurrency: 4, inFlight: 0, freeSlots: 4, expected: ELIGIBLE },
  { name: 'bearerless_duplicate with free slots is never eligible', authState: 'bearerless_duplicate', status: 'ready', slotsFree: 4, maxConcurrency: 4, inFlight: 0, freeSlots: 4, expected: quarantined },
  { name: 'bearerless_duplicate, busy: quarantine is the reason', authState: 'bearerless_duplicate', status: 'busy', slotsFree: 0, maxConcurrency: 4, inFlight: 4, freeSlots: 0, expected: quarantined },
  { name: 'bearer_validated, busy', authState: 'bearer_validated', status: 'busy', slotsFree: 4, maxConcurrency: 4, inFlight: 0, freeSlots: 4, expected: notReady },
  { name: 'bearer_validated, draining', authState: 'bearer_validated', status: 'draining', slotsFree: 4, maxConcurrency: 4, inFlight: 0, freeSlots: 4, expected: notReady },
  { name: 'bearer_validated, degraded', authState: 'bearer_validated', status: 'degraded', slotsFree: 4, maxConcurrency: 4, inFlight: 0, freeSlots: 4, expected: notReady },
  { name: 'bearer_validated, unavailable', authState: 'bearer_validated', status: 'unavailable', slotsFree: 4, maxConcurrency: 4, inFlight: 0, freeSlots: 4, expected: notReady },
  { name: 'self_minted, draining', authState: 'self_minted', status: 'draining', slotsFree: 2, maxConcurrency: 2, inFlight: 0, freeSlots: 2, expected: notReady },
  { name: 'self_minted, degraded with no slots: status is the reason', authState: 'self_minted', status: 'degraded', slotsFree: 0, maxConcurrency: 2, inFlight: 2, freeSlots: 0, expected: notReady },
  { name: 'ready but provider reports 0 free', authState: 'bearer_validated', status: 'ready', slotsFree: 0, maxConcurrency: 4, inFlight: 0, freeSlots: 0, expected: noSlots },
  { name: 'in-flight caps reported free slots', authState: 'bearer_validated', status: 'ready', slotsFree: 4, maxConcurrency: 2, inFlight: 2, freeSlots: 0, expected: noSlots },
  { name: 'in-flight leaves one slot', authState: 'self_minted', status: 'ready', slotsFree: 4, maxConcurrency: 4, inFlight: 3, freeSlots: 1, expected: ELIGIBLE },
  { name: 'report lower than concurrency headroom wins', authState: 'bearer_validated', status: 'ready', slotsFree: 1, maxConcurrency: 8, inFlight: 2, freeSlots: 1, expected: ELIGIBLE },
  { name: 'in-flight above maxConcurrency never goes negative', authState: 'bearer_validated', status: 'ready', slotsFree: 4, maxConcurrency: 2, inFlight: 5, freeSlots: 0, expected: noSlots },
  { name: 'negative reported free slots clamp to 0', authState: 'bearer_validated', status: 'ready', slotsFree: -3, maxConcurrency: 2, inFlight: 0, freeSlots: 0, expected: noSlots },
]

t.test('routingEligible and effectiveFreeSlots', async (t) => {
  for (const c of cases) {
    const facts = { authState: c.authState, status: c.status, slotsFree: c.slotsFree, maxConcurrency: c.maxConcurrency, inFlight: c.inFlight }
    t.equal(effectiveFreeSlots(facts), c.freeSlots, `${c.name}: effectiveFreeSlots`)
    t.strictSame(routingEligible(facts), c.expected, `${c.name}: eligibility`)
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
