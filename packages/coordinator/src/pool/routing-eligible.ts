import type { IneligibleReason } from '@poolcoord/protocol'
import type { ProviderSession } from './provider-session.js'

export type { IneligibleReason }

export type Eligibility = { eligible: true } | { eligible: false; reason: IneligibleReason }

type EligibilityFacts = Pick<ProviderSession, 'authState' | 'status' | 'slotsFree' | 'maxConcurrency' | 'inFlight'> &
  Partial<Pick<ProviderSession, 'drainRequested' | 'cordoned' | 'leasePending'>>

/**
 * Slots the coordinator may still use. The provider's report can lag behind our own dispatches,
 * so the coordinator's in-flight count caps it.
 */
export function effectiveFreeSlots(s: Pick<ProviderSession, 'slotsFree' | 'maxConcurrency' | 'inFlight'>): number {
  return Math.max(0, Math.min(s.slotsFree, s.maxConcurrency - s.inFlight))
}

/**
 * The one rule for "may this session receive buyer traffic". The router, /v1/models and /poolz
 * all call this function; none of them filters on its own.
 */
export function routingEligible(s: EligibilityFacts): Eligibility {
  if (s.authState !== 'key_proven' && s.authState !== 'bearer_validated' && s.authState !== 'self_minted') return NOT.quarantined_duplicate
  // Cluster mode: another session of this provider_id may still be routed until the handover ends.
  if (s.leasePending === true) return NOT.lease_pending
  // An operator's cordon outranks everything the provider itself reports.
  if (s.cordoned === true) return NOT.cordoned
  if (s.drainRequested === true) return NOT.draining
  if (s.status !== 'ready') return NOT.not_ready
  if (effectiveFreeSlots(s) <= 0) return NOT.no_free_slots
  return ELIGIBLE
}

// Answers are shared, frozen constants: selection asks for up to 64 sessions per request.
const ELIGIBLE: Eligibility = Object.freeze({ eligible: true })
const no = (reason: IneligibleReason): Eligibility => Object.freeze({ eligible: false, reason })
const NOT: Readonly<Record<IneligibleReason, Eligibility>> = {
  quarantined_duplicate: no('quarantined_duplicate'),
  lease_pending: no('lease_pending'),
  cordoned: no('cordoned'),
  draining: no('draining'),
  not_ready: no('not_ready'),
  no_free_slots: no('no_free_slots'),
}
