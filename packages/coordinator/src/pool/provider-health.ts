import type { FailureReason } from '@poolcoord/protocol'
import type { ProviderSession } from './provider-session.js'

/** A provider_id's failure history: what the Registry keeps after its session leaves. */
export type Health = Pick<ProviderSession, 'consecutiveFailures' | 'cooldownUntil'> & { lastFailure: FailureReason | null; failingSince: number }

export const COOLDOWN_BASE_MS = 1_000
export const COOLDOWN_MAX_MS = 60_000

/**
 * A provider that fails requests is ranked below healthy ones for a while: 1 s after a failure,
 * doubling with each further failure in a row, up to 60 s; one complete answer clears it.
 *
 * Without this a single provider that answers every request with an instant error would win
 * every selection (an error gives its slot straight back, so it always has the most free
 * slots) and fail the whole pool's traffic. Cooling down ranks it last rather than excluding
 * it, so a pool whose only providers are failing still tries them.
 */
export function afterFailure(h: Pick<ProviderSession, 'consecutiveFailures' | 'failingSince'>, now: number, reason: FailureReason): Health {
  const n = h.consecutiveFailures + 1
  return {
    consecutiveFailures: n,
    cooldownUntil: now + Math.min(COOLDOWN_MAX_MS, COOLDOWN_BASE_MS * 2 ** Math.min(n - 1, 16)),
    lastFailure: reason,
    failingSince: n === 1 || !h.failingSince ? now : h.failingSince,
  }
}

export function afterSuccess(): Health {
  return { consecutiveFailures: 0, cooldownUntil: 0, lastFailure: null, failingSince: 0 }
}

export function isCoolingDown(h: Pick<ProviderSession, 'cooldownUntil'>, now: number): boolean {
  return now < h.cooldownUntil
}
