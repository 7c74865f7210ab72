import type { AuthState } from '@poolcoord/protocol'
import type { ProviderSession } from './provider-session.js'

export type RegistrationDecision =
  { action: 'register' } | { action: 'replace' } | { action: 'refuse'; reason: 'duplicate_never_displaces' | 'bearer_downgrade' | 'key_downgrade' }

/**
 * Whether a newly admitted session may take the provider_id's single slot in the pool. A weaker
 * credential never pushes out a bearer-validated session that is still serving: otherwise a
 * tokenless claim could capture a victim's traffic without ever holding its token. "Serving" is
 * wider than routable on purpose: a busy or saturated session has requests in flight that a
 * replacement would cut off. Only a session that said it is leaving (draining, unavailable) may
 * be replaced by a weaker one.
 *
 * `existing` names only the two facts the rule reads, so that cluster mode can feed it the same
 * facts from a session lease on another node (cluster/lease-decision.ts): if the rule ever reads
 * another fact, that caller stops compiling until the lease carries it too.
 */
export function decideRegistration(existing: Pick<ProviderSession, 'authState' | 'status'> | undefined, incoming: AuthState): RegistrationDecision {
  if (existing === undefined) return { action: 'register' }
  if (incoming === 'bearerless_duplicate') return { action: 'refuse', reason: 'duplicate_never_displaces' }
  if (incoming === 'key_proven') return { action: 'replace' }
  const serving = existing.status !== 'draining' && existing.status !== 'unavailable'
  // A bearer alone never displaces a serving session that proved the id's key: that bearer may be stolen.
  if (incoming === 'bearer_validated')
    return existing.authState === 'key_proven' && serving ? { action: 'refuse', reason: 'key_downgrade' } : { action: 'replace' }
  if ((existing.authState === 'bearer_validated' || existing.authState === 'key_proven') && serving) return { action: 'refuse', reason: 'bearer_downgrade' }
  return { action: 'replace' }
}

/** A session that has sent nothing for idleTimeoutMs is presumed dead (half-open, NAT drop). */
export function isIdle(s: Pick<ProviderSession, 'lastInboundAt'>, now: number, idleTimeoutMs: number): boolean {
  return now - s.lastInboundAt >= idleTimeoutMs
}
