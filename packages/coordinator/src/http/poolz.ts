import type { AuthState, PoolzCluster, PoolzResponse, PoolzRow } from '@poolcoord/protocol'
import { cooldownFlags, type Released } from '../pool/ejection-cap.js'
import type { ProviderSession } from '../pool/provider-session.js'
import { effectiveFreeSlots, routingEligible } from '../pool/routing-eligible.js'
import type { Strikes } from '../pool/strike-book.js'

/** What /poolz shows beside the sessions themselves: the ejection cap's releases and the strike book, at `now`. */
export interface PoolzHealth {
  now: number
  /** From the same EjectionCap the router reads, so `cooling_down` is what selection does. */
  released: Released
  strikes: (providerId: string) => Strikes | null
}

/**
 * The operator's view of the pool. Routability comes from routingEligible alone. Rows carry a
 * token prefix at most: never a token, never a hash.
 */
export function renderPoolz(sessions: Iterable<ProviderSession>, health: PoolzHealth, cluster: PoolzCluster | null = null): PoolzResponse {
  const pool: PoolzRow[] = []
  const byAuth: Record<AuthState, number> = { key_proven: 0, bearer_validated: 0, self_minted: 0, bearerless_duplicate: 0 }
  const models = new Map<string, { providers: number; routable: number }>()
  let routable = 0
  const slots = { total: 0, free: 0, effective_free: 0, in_flight: 0 }
  for (const s of sessions) {
    const eligibility = routingEligible(s)
    byAuth[s.authState]++
    if (eligibility.eligible) routable++
    slots.total += s.slotsTotal
    slots.free += s.slotsFree
    slots.in_flight += s.inFlight
    if (eligibility.eligible) slots.effective_free += effectiveFreeSlots(s)
    for (const m of s.models) {
      const entry = models.get(m) ?? { providers: 0, routable: 0 }
      entry.providers++
      if (eligibility.eligible) entry.routable++
      models.set(m, entry)
    }
    const cooldown = cooldownFlags(s, health.now, health.released)
    const strikes = health.strikes(s.providerId)
    pool.push({
      provider_id: s.providerId,
      assigned_id: s.assignedId,
      ...(s.nodeId === undefined ? {} : { node_id: s.nodeId }),
      auth_state: s.authState,
      routing_eligible: eligibility.eligible,
      ...(eligibility.eligible ? {} : { routing_ineligible_reason: eligibility.reason }),
      cordoned: s.cordoned,
      status: s.status,
      slots_free: s.slotsFree,
      slots_total: s.slotsTotal,
      effective_free_slots: effectiveFreeSlots(s),
      in_flight: s.inFlight,
      consecutive_failures: s.consecutiveFailures,
      last_failure_reason: s.consecutiveFailures === 0 ? null : (s.lastFailure ?? null),
      cooldown_until: s.cooldownUntil === 0 ? null : iso(s.cooldownUntil),
      cooling_down: cooldown.coolingDown,
      cooldown_capped: cooldown.capped,
      strikes: strikes?.strikes ?? 0,
      last_strike_reason: strikes?.lastReason ?? null,
      max_concurrency: s.maxConcurrency,
      max_context_tokens: s.maxContextTokens,
      model_id: s.modelId,
      models: s.models,
      hostname: s.hostname,
      binary_version: s.binaryVersion,
      token_prefix: s.tokenPrefix,
      identity:
        s.identity === null
          ? { pinned: false, generation: null, key_fingerprint: null }
          : { pinned: true, generation: s.identity.generation, key_fingerprint: s.identity.keyFingerprint },
      connected_at: iso(s.connectedAt),
      last_heartbeat_at: s.lastHeartbeatAt === null ? null : iso(s.lastHeartbeatAt),
      last_inbound_at: iso(s.lastInboundAt),
    })
  }
  pool.sort((a, b) => a.provider_id.localeCompare(b.provider_id))
  return {
    ...(cluster === null ? {} : { cluster }),
    pool,
    summary: {
      total: pool.length,
      routable,
      by_auth_state: byAuth,
      slots,
      models: [...models.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([id, m]) => ({ id, providers: m.providers, routable: m.routable })),
    },
  }
}

function iso(ms: number): string {
  return new Date(ms).toISOString()
}
