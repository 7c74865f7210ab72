import { releasedFor, type Released } from '../pool/ejection-cap.js'
import { isCoolingDown } from '../pool/provider-health.js'
import type { ProviderSession } from '../pool/provider-session.js'
import { effectiveFreeSlots, routingEligible } from '../pool/routing-eligible.js'

export interface SelectionRequest {
  model: string
  /** From X-Pool-Provider: only this provider_id may serve, with no substitute. */
  pin: string | null
  /** provider_ids already tried for this request; a failover never returns to them. */
  exclude: ReadonlySet<string>
}

/** Candidates weighed per request in a large pool (see selectProvider). */
export const SAMPLE = 64

const NO_RELEASES: Released = new Map()

export type Selection = { ok: true; session: ProviderSession } | { ok: false; reason: 'model_not_found' | 'no_provider_available' }

/**
 * Chooses the session for one dispatch. Pure: the pool, the request, a random source and the
 * ejection cap's releases in, a decision out (specs/buyer-api.md §3).
 *
 * Candidates serve the model (exact, case-sensitive match), pass routingEligible and are not
 * excluded. They fall in three tiers:
 *   - healthy: not cooling down after failures (provider-health.ts);
 *   - released: cooling down, but the ejection cap released it for this model (pool/ejection-cap.ts);
 *   - sidelined: cooling down and not released, chosen only when neither other tier has a candidate.
 * Within a tier the strategy is *spread*:
 *   1. most effective free slots, so that load spreads instead of packing one machine;
 *   2. then the higher throughput estimate (a provider that reported none counts as 0);
 *   3. then uniformly at random among exact ties, so equal providers share the load.
 * The best released candidate then wins with probability released / (healthy + released), the
 * counts of each tier's candidates, and the best healthy one otherwise. Ranked on slots with the
 * healthy, a released provider that fails at once (and so always has every slot free) would take
 * almost all the traffic; like a host Envoy's max_ejection_percent puts back, it gets its share.
 *
 * One pass with reservoir sampling for the ties: no sort and no allocation. In a pool of more
 * than SAMPLE sessions the pass starts at a random index of the registry's list, which the
 * registry keeps in random order, and stops once it has weighed SAMPLE healthy or released
 * candidates: the choice is made within a random sample of SAMPLE of them (or all of them, if
 * fewer), and a sidelined provider is still chosen only when the whole pool has no other
 * candidate. The pass skips, without counting, sessions for other models and ineligible ones
 * (busy, full, draining), so its cost is SAMPLE candidates plus what it skips on the way: flat
 * while most of the pool can take the request, approaching a full scan, as a small pool always
 * does, when few can. A model is "not found" only when the pool has sessions and none of them
 * reports it. A known model with no eligible provider right now, or an empty pool (as just after
 * a coordinator restart, before providers reconnect), is "no provider available": a 503 tells
 * clients to retry, where a 404 would tell them to give up.
 */
export function selectProvider(
  sessions: readonly ProviderSession[],
  req: SelectionRequest,
  random: () => number,
  now: number,
  released: Released = NO_RELEASES,
): Selection {
  const n = sessions.length
  // Small pools and pinned requests: every session, from the first. Large pools: a random start.
  const sampled = n > SAMPLE && req.pin === null
  const start = sampled ? Math.floor(random() * n) : 0
  // A release holds for the model it was computed for, never for the provider's other models.
  const releasedHere = releasedFor(released, req.model)
  let known = false
  // The best healthy candidate, or the best sidelined one while no healthy one has been met.
  let best: ProviderSession | null = null
  let bestHealthy = false
  let bestSlots = 0
  let bestTps = 0
  let ties = 0
  let healthyCount = 0
  // The best released candidate, in its own tier.
  let rel: ProviderSession | null = null
  let relSlots = 0
  let relTps = 0
  let relTies = 0
  let relCount = 0
  for (let i = 0; i < n; i++) {
    if (sampled && healthyCount + relCount >= SAMPLE) break
    const s = sessions[(start + i) % n]!
    if (!s.models.includes(req.model)) continue
    known = true
    if (req.pin !== null && s.providerId !== req.pin) continue
    if (req.exclude.has(s.providerId) || !routingEligible(s).eligible) continue
    const slots = effectiveFreeSlots(s)
    const tps = s.throughputTps ?? 0
    const healthy = !isCoolingDown(s, now)
    if (!healthy && releasedHere.has(s.providerId)) {
      relCount++
      const order = rel === null ? 1 : compare(slots, tps, relSlots, relTps)
      if (order < 0) continue
      if (order > 0) relTies = 1
      else if (random() * ++relTies >= 1) continue
      rel = s
      relSlots = slots
      relTps = tps
      continue
    }
    if (healthy) healthyCount++
    const order = best === null ? 1 : healthy !== bestHealthy ? (healthy ? 1 : -1) : compare(slots, tps, bestSlots, bestTps)
    if (order < 0) continue
    if (order > 0) ties = 1
    else if (random() * ++ties >= 1) continue
    best = s
    bestHealthy = healthy
    bestSlots = slots
    bestTps = tps
  }
  // Released beats sidelined outright; against healthy it wins only its tier's share of the candidates.
  if (rel !== null && (healthyCount === 0 || random() * (healthyCount + relCount) < relCount)) return { ok: true, session: rel }
  if (best !== null) return { ok: true, session: best }
  return { ok: false, reason: known || n === 0 ? 'no_provider_available' : 'model_not_found' }
}

function compare(slots: number, tps: number, bestSlots: number, bestTps: number): number {
  if (slots !== bestSlots) return slots > bestSlots ? 1 : -1
  if (tps !== bestTps) return tps > bestTps ? 1 : -1
  return 0
}
