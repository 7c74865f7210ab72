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
  if (s.authState !== 'key_proven' && s.authState !== 'bearer_validated' && s.authState !== 'self_minted') {
    return { eligible: false, reason: 'quarantined_duplicate' }
  }
  // Cluster mode: another session of this provider_id may still be routed until the handover ends.
  if (s.leasePending === true) return { eligible: false, reason: 'lease_pending' }
  // An operator's cordon outranks everything the provider itself reports.
  if (s.cordoned === true) return { eligible: false, reason: 'cordoned' }
  if (s.drainRequested === true) return { eligible: false, reason: 'draining' }
  if (s.status !== 'ready') return { eligible: false, reason: 'not_ready' }
  if (effectiveFreeSlots(s) <= 0) return { eligible: false, reason: 'no_free_slots' }
  return { eligible: true }
}
