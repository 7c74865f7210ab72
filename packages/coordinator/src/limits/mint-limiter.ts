import { StoreUnavailableError } from '../errors.js'
import { addressKeys } from './address-prefix.js'
import { MAX_RATE_PERIOD_MS, perMs, refilled, type Rate } from './rate.js'
import type { BucketTake, RateBucketStore } from './rate-bucket-store.js'

/** The limits on getting a token without presenting one (specs/admission.md §7); null: off. */
export interface MintRules {
  /** Credential-less admissions per address (IPv4 /32, IPv6 /64). */
  mintPerAddress: Rate | null
  /** The same per address prefix (IPv4 /24, IPv6 /48). */
  mintPerPrefix: Rate | null
  /** The same across all addresses and, in cluster mode, all nodes. */
  mintGlobal: Rate | null
  /** When the global bucket is empty: admissions from prefixes that minted nothing for a whole refill period. */
  mintNewcomer: Rate | null
  /** Key recoveries per provider_id. */
  recoveryPerId: Rate | null
  /** v1 self-heals per provider_id (a re-mint for an id whose unproven token was never used). */
  healPerId: Rate | null
}

export type LimitBucket = 'address' | 'prefix' | 'global' | 'newcomer' | 'recovery' | 'heal'

/** `local`: refused by this node's gate, without a statement. `charged`: what a later refund gives back. */
export type LimitVerdict = { ok: true; charged: readonly BucketTake[] } | { ok: false; bucket: LimitBucket; retryAfterMs: number; local: boolean }

type Rule = { bucket: LimitBucket; key: string; rate: Rate | null; fullOnly?: boolean }

/** What a node remembers of one bucket, to refuse without asking the store. */
interface LocalGate {
  /** A bucket of twice the shared burst, charged by every take this node sends to the store. */
  level: number
  at: number
  /** The store said this bucket has no token before then; no other node can make it sooner. */
  blockedUntil: number
}

const MAX_LOCAL_GATES = 100_000
const PRUNE_EVERY_MS = 10 * 60_000

/**
 * The mint, recovery and self-heal limits: exact in the shared store, cheap in front of it.
 *
 * The store (RateBucketStore) decides: one statement takes a token from every bucket of an
 * admission or from none, so a limit holds across restarts and nodes. In front of it, each node
 * keeps a gate per bucket that refuses without any statement when either
 * - the store already said the bucket is empty until some time, which only other nodes' takes can
 *   push later, never earlier: so a sequential flood costs one statement per refilled token; or
 * - this node has more than twice the burst of takes in flight or taken within the refill
 *   window: so a burst of simultaneous attempts costs at most twice the burst in statements.
 * A take the store refuses gives its local charge back, so the gate never refuses what the store
 * would grant because of this node's own refusals; a take that failed gives it back only once
 * its statement has really ended, so a stalled store cannot be sent more than twice the burst.
 * The gates are bounded, least recently used dropped first; a dropped gate costs one statement.
 *
 * The global bucket alone could be kept empty by a handful of prefixes taking each token as it
 * refills, and no newcomer would ever get in. So when it refuses, an admission from a prefix
 * whose own bucket is full (it minted nothing for a whole period) may take from the newcomer
 * bucket instead: to keep that one empty too, an attacker needs a fresh prefix per token.
 */
export class MintLimiter {
  private readonly gates = new Map<string, LocalGate>()
  private lastPrune = 0

  constructor(
    private readonly store: RateBucketStore,
    private readonly rules: MintRules,
    private readonly onPruneError: (err: unknown) => void = () => undefined,
  ) {}

  /** A credential-less admission from `peer`: a tokenless hello, or a tokenless identity-v2 enroll. */
  async takeMint(peer: string, now: number): Promise<LimitVerdict> {
    const { address, prefix } = addressKeys(peer)
    const a: Rule = { bucket: 'address', key: `mint:a:${address}`, rate: this.rules.mintPerAddress }
    const p: Rule = { bucket: 'prefix', key: `mint:p:${prefix}`, rate: this.rules.mintPerPrefix }
    const first = await this.take([a, p, { bucket: 'global', key: 'mint:g', rate: this.rules.mintGlobal }], now)
    if (first.ok || first.bucket !== 'global' || this.rules.mintNewcomer === null || p.rate === null) return first
    const second = await this.take([a, { ...p, fullOnly: true }, { bucket: 'newcomer', key: 'mint:n', rate: this.rules.mintNewcomer }], now)
    // Refused again: what the caller needs to hear about is the pool-wide limit it met first.
    return second.ok ? second : first
  }

  /** A key recovery for `providerId`, after its proof verified. */
  takeRecovery(providerId: string, now: number): Promise<LimitVerdict> {
    return this.take([{ bucket: 'recovery', key: `recover:${providerId}`, rate: this.rules.recoveryPerId }], now)
  }

  /**
   * A tokenless hello turned out to be a v1 self-heal: an old binary that drops its token
   * re-mints at every reconnect, which must not spend the address's and the pool's budget for
   * new identities (a restart of such a fleet would lock most of it out for hours). It is charged
   * to the id's heal bucket instead, and the mint charge is given back. If the heal bucket is
   * empty, the mint charge stands.
   */
  async chargeHeal(providerId: string, charged: readonly BucketTake[], now: number): Promise<void> {
    if (charged.length === 0) return
    const heal = await this.take([{ bucket: 'heal', key: `heal:${providerId}`, rate: this.rules.healPerId }], now)
    if (!heal.ok || heal.charged.length === 0) return
    await this.store.give(charged, now)
    for (const b of charged) {
      const g = this.gates.get(b.key)
      if (g !== undefined) g.level = Math.min(2 * b.burst, g.level + 1)
    }
  }

  private async take(rules: Rule[], now: number): Promise<LimitVerdict> {
    const active = rules.filter((r): r is Rule & { rate: Rate } => r.rate !== null)
    if (active.length === 0) return { ok: true, charged: [] }
    const charged: LocalGate[] = []
    for (const r of active) {
      const gate = this.gate(r.key, r.rate, now)
      if (now < gate.blockedUntil && r.fullOnly !== true) return this.refused(charged, r.bucket, gate.blockedUntil - now, true)
      if (gate.level < 1) return this.refused(charged, r.bucket, (1 - gate.level) / perMs(r.rate), true)
      gate.level -= 1
      charged.push(gate)
    }
    const takes: BucketTake[] = active.map((r) => ({
      key: r.key,
      burst: r.rate.burst,
      perMs: perMs(r.rate),
      ...(r.fullOnly === true ? { fullOnly: true } : {}),
    }))
    let result
    try {
      result = await this.store.take(takes, now)
    } catch (err) {
      const giveBack = (): void => charged.forEach((g) => (g.level += 1))
      if (err instanceof StoreUnavailableError) void err.settled.then(giveBack)
      else giveBack()
      throw err
    }
    this.maybePrune(now)
    if (!('bucket' in result)) return { ok: true, charged: takes }
    const which = active.find((r) => r.key === result.bucket)
    // A full-only refusal says when that bucket is full again, not when it has a token.
    const gate = this.gates.get(result.bucket)
    if (gate !== undefined && which?.fullOnly !== true) gate.blockedUntil = Math.max(gate.blockedUntil, now + result.waitMs)
    return this.refused(charged, which?.bucket ?? 'global', result.waitMs, false)
  }

  private refused(charged: LocalGate[], bucket: LimitBucket, waitMs: number, local: boolean): LimitVerdict {
    for (const g of charged) g.level += 1
    return { ok: false, bucket, retryAfterMs: Math.ceil(waitMs), local }
  }

  /** The gate of `key`, refilled to `now` and moved to the most recently used end; created full (twice the burst). */
  private gate(key: string, rate: Rate, now: number): LocalGate {
    const cap = 2 * rate.burst
    let gate = this.gates.get(key)
    if (gate === undefined) {
      if (this.gates.size >= MAX_LOCAL_GATES) this.gates.delete(this.gates.keys().next().value as string)
      gate = { level: cap, at: now, blockedUntil: 0 }
    } else {
      this.gates.delete(key)
      gate.level = refilled(gate.level, gate.at, now, cap, perMs(rate))
      gate.at = now
    }
    this.gates.set(key, gate)
    return gate
  }

  /** Now and then, drop the store's buckets that have been full for a day (they equal absent ones). */
  private maybePrune(now: number): void {
    if (now - this.lastPrune < PRUNE_EVERY_MS) return
    this.lastPrune = now
    this.store.prune(now - MAX_RATE_PERIOD_MS).catch(this.onPruneError)
  }

  /** Gates held in memory (for tests of the bound). */
  get localGates(): number {
    return this.gates.size
  }
}
