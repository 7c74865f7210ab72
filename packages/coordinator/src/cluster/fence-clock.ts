/**
 * When may this node route? Decided from its own monotonic clock alone, so no clock sync is needed.
 *
 * The node renews its key in the `pc_nodes` bucket, whose TTL is `ttlMs`. The server stores a
 * renewal no earlier than the node sent it, and counts the TTL from that store time, so the key
 * cannot expire before `sentAt + ttlMs` (as measured by a clock that runs at the node's rate).
 * The node stops routing at `sentAt + ttlMs - marginMs`, a margin earlier, where `sentAt` is the
 * send time of its last renewal that succeeded. Another node learns of the expiry only after it
 * happened, so it can never take over this node's providers while this node still routes them.
 * The margin absorbs what the argument above idealises: NATS servers' wall clocks (the TTL is
 * applied to a stored timestamp; a new stream leader with a clock ahead expires early), clock
 * rate differences, and frames already on the wire when the deadline passes (specs/cluster.md §3).
 *
 * Pure: plain numbers in, no timers, no I/O.
 */
import { ConfigError } from '../errors.js'

export interface FenceTiming {
  /** TTL of the pc_nodes bucket: the server drops a key this long after storing its last write. */
  ttlMs: number
  /** How much earlier than the earliest possible expiry the node stops routing. */
  marginMs: number
  /** How often the node renews its key. */
  renewIntervalMs: number
}

export const defaultFenceTiming: FenceTiming = { ttlMs: 10_000, marginMs: 3_000, renewIntervalMs: 2_000 }

/** At least two renewals must fit before the deadline, so one lost renewal never fences a node. */
export function checkFenceTiming(t: FenceTiming): void {
  const ints = [t.ttlMs, t.marginMs, t.renewIntervalMs].every((n) => Number.isInteger(n) && n > 0)
  if (!ints || t.marginMs >= t.ttlMs || 2 * t.renewIntervalMs > t.ttlMs - t.marginMs) {
    throw new ConfigError('fence timing needs positive integers with margin < ttl and 2 renewal intervals <= ttl - margin')
  }
}

/** The moment this node must stop routing: -Infinity before any renewal succeeded. */
export function fenceDeadline(lastRenewalSentAt: number | null, t: FenceTiming): number {
  return lastRenewalSentAt === null ? -Infinity : lastRenewalSentAt + t.ttlMs - t.marginMs
}

export function isLiveAt(lastRenewalSentAt: number | null, now: number, t: FenceTiming): boolean {
  return now < fenceDeadline(lastRenewalSentAt, t)
}

/**
 * The fence state of one node: the send time of its last successful renewal, and a revocation
 * point before which no renewal counts (set when the node fences, loses its key, or stops).
 */
export class FenceClock {
  #sentAt: number | null = null
  #revokedAt = -Infinity

  constructor(readonly timing: FenceTiming) {
    checkFenceTiming(timing)
  }

  /** A renewal sent at `sentAt` succeeded. A reply older than what is known, or than a revocation, changes nothing. */
  renewed(sentAt: number): void {
    if (sentAt < this.#revokedAt) return
    if (this.#sentAt === null || sentAt > this.#sentAt) this.#sentAt = sentAt
  }

  /** Not live from `at` on, until a renewal sent at or after `at` succeeds. */
  revoke(at: number): void {
    this.#revokedAt = Math.max(this.#revokedAt, at)
    this.#sentAt = null
  }

  get lastRenewalSentAt(): number | null {
    return this.#sentAt
  }

  deadline(): number {
    return fenceDeadline(this.#sentAt, this.timing)
  }

  isLive(now: number): boolean {
    return isLiveAt(this.#sentAt, now, this.timing)
  }
}
