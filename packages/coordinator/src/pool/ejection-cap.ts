import { isCoolingDown } from './provider-health.js'
import type { ProviderSession } from './provider-session.js'
import { routingEligible } from './routing-eligible.js'

/** Per model, the provider_ids in cooldown that the cap releases for that model only. */
export type Released = ReadonlyMap<string, ReadonlySet<string>>

const NO_IDS: ReadonlySet<string> = new Set()
const NONE: Released = new Map()

/** How often the cap is recomputed even if nothing signalled a change (a safety net; see EjectionCap). */
export const REFRESH_MS = 1_000
/** Under a stream of failures, how often at most they make the cap recompute (see EjectionCap). */
export const MIN_RECOMPUTE_MS = 100

/** How many of a model's providers the cooldown may sideline at once. */
export function ejectionAllowance(providers: number, maxEjectionPercent: number): number {
  return Math.floor((providers * maxEjectionPercent) / 100)
}

export interface Releases {
  released: Released
  /** When the first cooldown running now ends, and the answer may change; Infinity if none is running. */
  until: number
}

/**
 * Which providers in cooldown the ejection cap releases, model by model (Envoy's
 * max_ejection_percent). For each model whose cooling providers outnumber its allowance, the ones
 * whose run of failures began last are released for that model, until the allowance holds. Pure.
 *
 * A release holds for its model only: a provider that also advertises a model nobody else serves
 * is always released there (one of one cooling, allowance 0), and must not shed its cooldown on
 * the models it shares.
 *
 * A model's providers are its sessions that routingEligible admits or turns away only for load
 * (busy, no free slot): load changes with every dispatch and must not change who is released.
 *
 * Last to start failing, as Envoy refuses new ejections once the cap is reached: a released
 * provider that fails again stays released. Ordering by cooldown end or by failure count would
 * swap it with a sidelined one at each failure, and two bad providers would take turns at the
 * head of the ranking (specs/buyer-api.md §3). provider_id breaks ties, so every reader gets the
 * same sets.
 */
export function cooldownReleases(sessions: readonly ProviderSession[], now: number, maxEjectionPercent: number): Releases {
  let cooling: ProviderSession[] | null = null
  let until = Infinity
  for (const s of sessions) {
    if (!isCoolingDown(s, now)) continue
    // Counted even when not eligible: it may become eligible (a lease handover) with no signal.
    until = Math.min(until, s.cooldownUntil)
    if (eligibleApartFromLoad(s)) (cooling ??= []).push(s)
  }
  if (cooling === null || maxEjectionPercent >= 100) return { released: NONE, until }
  const byModel = new Map<string, { providers: number; cooling: ProviderSession[] }>()
  for (const s of cooling) {
    for (const m of s.models) {
      const e = byModel.get(m) ?? { providers: 0, cooling: [] }
      e.cooling.push(s)
      byModel.set(m, e)
    }
  }
  for (const s of sessions) {
    if (!eligibleApartFromLoad(s)) continue
    for (const m of s.models) {
      const e = byModel.get(m)
      if (e !== undefined) e.providers++
    }
  }
  const released = new Map<string, Set<string>>()
  for (const [model, e] of byModel) {
    const excess = e.cooling.length - ejectionAllowance(e.providers, maxEjectionPercent)
    if (excess <= 0) continue
    e.cooling.sort(latestFirst)
    released.set(model, new Set(e.cooling.slice(0, excess).map((s) => s.providerId)))
  }
  return { released: released.size === 0 ? NONE : released, until }
}

/** The provider_ids released for `model`; empty when none are. */
export function releasedFor(released: Released, model: string): ReadonlySet<string> {
  return released.get(model) ?? NO_IDS
}

/** Selection ranks this session below healthy ones for a model: in cooldown, and not among that model's releases. */
export function isSidelined(s: Pick<ProviderSession, 'providerId' | 'cooldownUntil'>, now: number, releasedForModel: ReadonlySet<string>): boolean {
  return isCoolingDown(s, now) && !releasedForModel.has(s.providerId)
}

/**
 * /poolz's two flags, over every model the session serves: `coolingDown` if some model ranks it
 * last, `capped` if the cap releases it for some model. Both hold for a provider released for a
 * model it serves alone but sidelined for one it shares.
 */
export function cooldownFlags(
  s: Pick<ProviderSession, 'providerId' | 'cooldownUntil' | 'models'>,
  now: number,
  released: Released,
): { coolingDown: boolean; capped: boolean } {
  if (!isCoolingDown(s, now)) return { coolingDown: false, capped: false }
  let coolingDown = false
  let capped = false
  for (const m of s.models) {
    if (releasedFor(released, m).has(s.providerId)) capped = true
    else coolingDown = true
  }
  return { coolingDown, capped }
}

function eligibleApartFromLoad(s: ProviderSession): boolean {
  const e = routingEligible(s)
  return e.eligible || e.reason === 'no_free_slots' || (e.reason === 'not_ready' && s.status === 'busy')
}

function latestFirst(a: ProviderSession, b: ProviderSession): number {
  return (b.failingSince ?? 0) - (a.failingSince ?? 0) || (a.providerId < b.providerId ? -1 : a.providerId > b.providerId ? 1 : 0)
}

/** What the cap reads of the pool: the Registry, or in cluster mode the cluster's view. */
export interface CapSource {
  sessionList(): readonly ProviderSession[]
  readonly routingVersion: number
}

/**
 * cooldownReleases, kept between requests so that selection stays one cheap pass: the router and
 * /poolz's `cooling_down` read the same sets.
 *
 * A session joining or leaving (the list replaced, or its length changed) recomputes at once.
 * Every other change the pool signals through routingVersion (a failure, a success after
 * failures, a cordon, a drain, a change of status or models, a reconnect taking its
 * predecessor's place), and a running cooldown ending, recomputes at once too, unless the last
 * computation is under MIN_RECOMPUTE_MS old: then it waits that long. Each failure moves the
 * version, and recomputing on every one would make a stream of failing requests scan the whole
 * pool per request. The wait is harmless: isSidelined reads the live cooldownUntil, so a provider
 * whose cooldown ended is healthy at once, and a stale set only keeps or withholds a release for
 * at most MIN_RECOMPUTE_MS. While anyone is cooling down it is also recomputed at least every
 * REFRESH_MS, for what nothing signals (a cluster handover clearing leasePending).
 */
export class EjectionCap {
  private list: readonly ProviderSession[] | null = null
  private length = -1
  private version = -1
  private builtAt = -Infinity
  private current: Releases = { released: NONE, until: Infinity }

  constructor(readonly maxEjectionPercent: number) {}

  /** The router's read: the memo, recomputed as the class comment says. */
  released(pool: CapSource, now: number): Released {
    const list = pool.sessionList()
    const joinedOrLeft = list !== this.list || list.length !== this.length
    const changed = pool.routingVersion !== this.version || now >= this.current.until
    const age = now - this.builtAt
    // With nobody cooling down, only a signalled change (a failure, a session joining) can make a set non-empty.
    const due = this.current.until !== Infinity && age >= REFRESH_MS
    if (joinedOrLeft || due || (changed && age >= MIN_RECOMPUTE_MS) || age < 0) this.rebuild(pool, list, now)
    return this.current.released
  }

  /**
   * Recomputes now, whatever its age: /poolz, which walks the whole pool anyway, shows the
   * current state, and the router reads the same fresh sets after it.
   */
  fresh(pool: CapSource, now: number): Released {
    this.rebuild(pool, pool.sessionList(), now)
    return this.current.released
  }

  private rebuild(pool: CapSource, list: readonly ProviderSession[], now: number): void {
    this.current = cooldownReleases(list, now, this.maxEjectionPercent)
    this.list = list
    this.length = list.length
    this.version = pool.routingVersion
    this.builtAt = now
  }
}
