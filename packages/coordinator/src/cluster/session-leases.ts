import { setTimeout as delay } from 'node:timers/promises'
import type { KV } from '@nats-io/kv'
import type { ProviderStatus } from '@poolcoord/protocol'
import { CoordinatorError, NatsUnavailableError } from '../errors.js'
import type { Logger } from '../logger.js'
import {
  activeLease,
  claimedLease,
  decideClaim,
  handoverDuty,
  releaseStep,
  sessionVerdict,
  statusMatters,
  type Claimant,
  type ClaimRefusal,
  type CurrentLease,
} from './lease-decision.js'
import { encodeLease, leaseKey, sameSession, type IncarnationRef, type SessionLease, type SessionRef } from './lease-value.js'
import { watchLeases, type LeaseEvent, type LeaseWatch } from './lease-watch.js'
import type { NatsLink } from './nats-link.js'
import { isWrongLastSequence } from './nodes-bucket.js'
import { nodeKeyLiveness, openSessionsBucket, readLease, type IncarnationLiveness, type LeaseEntry } from './sessions-bucket.js'

export type { LeaseEvent, LeaseWatch } from './lease-watch.js'
export type { LeaseEntry } from './sessions-bucket.js'

/** A lease as this node last read or wrote it. */
export interface HeldLease {
  lease: SessionLease
  revision: number
}

export type ClaimResult =
  | ({ ok: true; action: 'create' | 'take_over_dead' | 'replace_with_handover' } & HeldLease)
  /** `busy`: three compare-and-sets in a row lost to other writers (close 4429); the others as decideRegistration, or an unreadable lease (4005). */
  | { ok: false; reason: ClaimRefusal | 'busy' }

export type RoutableResult = ({ routable: true } & HeldLease) | { routable: false }

export interface SessionLeasesOptions {
  link: NatsLink
  log: Logger
  /** Whether an incarnation is live; pc_nodes read at decision time unless a test says otherwise. */
  liveness?: IncarnationLiveness
}

/** Each operation re-reads and re-decides after losing a compare-and-set, this many times in all. */
const ATTEMPTS = 3

/**
 * Session ownership leases in pc_sessions, one per provider_id, cluster-wide (specs/cluster.md
 * §7). Every write is a compare-and-set on the revision that was read and decided on; the rules
 * are in lease-decision.ts. Every store error, and NATS being unreachable, throws
 * NatsUnavailableError at once: the caller closes the socket 4005, never admits on a guess.
 *
 * A node uses it so: `claim` after admission decided the auth state; if the result is `active`
 * the session is routable, if `handover` it waits in `awaitRoutable`. It runs one `watch`, and
 * for each handover addressed to it (lease-decision.ts handoverDuty) it closes the old socket
 * 4006, then calls `confirmHandover`. On close, `release`. Status changes go to `setStatus`.
 */
export class SessionLeases {
  private constructor(
    private readonly link: NatsLink,
    private readonly kv: KV,
    private readonly live: IncarnationLiveness,
    private readonly log: Logger,
  ) {}

  static async open(opts: SessionLeasesOptions): Promise<SessionLeases> {
    try {
      const kv = await openSessionsBucket(opts.link, opts.log)
      return new SessionLeases(opts.link, kv, opts.liveness ?? (await nodeKeyLiveness(opts.link)), opts.log)
    } catch (err) {
      throw err instanceof CoordinatorError ? err : new NatsUnavailableError(opts.link.servers, err)
    }
  }

  read(providerId: string): Promise<LeaseEntry> {
    const key = leaseKey(providerId)
    return this.#io(() => readLease(this.kv, key))
  }

  /** The lease with the liveness of the incarnations it names, read now: what decideClaim would see. */
  async readLive(providerId: string): Promise<CurrentLease> {
    const key = leaseKey(providerId)
    return this.#withLiveness(await this.#io(() => readLease(this.kv, key)))
  }

  /** Takes the provider_id's lease for `claimant`, if the rules allow (lease-decision.ts decideClaim). */
  async claim(providerId: string, claimant: Claimant): Promise<ClaimResult> {
    const key = leaseKey(providerId)
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const entry = await this.#io(() => readLease(this.kv, key))
      const decision = decideClaim(await this.#withLiveness(entry), claimant.auth_state)
      if (decision.action === 'refuse') {
        if (decision.reason === 'lease_unreadable') {
          this.log.error(
            { event: 'cluster.lease_unreadable', provider_id: providerId, key, revision: entry.revision },
            'a session lease holds a value this coordinator cannot read; the id is refused until an operator deletes the key',
          )
        }
        return { ok: false, reason: decision.reason }
      }
      const lease = claimedLease(claimant, decision)
      const bytes = encodeLease(lease) // outside #cas: an invalid claimant is a bug, not a store error
      const revision = await this.#cas(() => this.kv.put(key, bytes, { previousSeq: entry.revision }))
      if (revision !== null) return { ok: true, action: decision.action, lease, revision }
    }
    this.log.warn({ event: 'cluster.lease_busy', provider_id: providerId }, 'the session lease kept changing under this claim')
    return { ok: false, reason: 'busy' }
  }

  /**
   * Resolves once `mine` may route: the lease names it and is active (written by the old owner
   * when it let go, or by us here once the old incarnation is dead), or with `routable: false`
   * once another session displaced it. Polls every `pollMs`: pc_nodes gives no event when a key
   * expires (NATS 2.9), and a poll does not depend on a watch that may have missed a write.
   * Rejects (AbortError) when the signal aborts: the socket closed meanwhile.
   */
  async awaitRoutable(
    providerId: string,
    mine: SessionRef,
    opts: { signal?: AbortSignal; pollMs?: number; until?: (signal: AbortSignal | undefined) => Promise<void> } = {},
  ): Promise<RoutableResult> {
    const key = leaseKey(providerId)
    for (;;) {
      opts.signal?.throwIfAborted()
      const entry = await this.#io(() => readLease(this.kv, key))
      const lease = entry.kind === 'lease' ? entry.lease : null
      const prev = lease !== null && sameSession(lease, mine) ? lease.prev : undefined
      const prevLive = prev !== undefined && (await this.#io(() => this.live(prev)))
      switch (sessionVerdict(lease, mine, prevLive)) {
        case 'routable':
          return { routable: true, lease: lease as SessionLease, revision: entry.revision }
        case 'displaced':
          return { routable: false }
        case 'promote': {
          const active = activeLease(lease as SessionLease)
          const bytes = encodeLease(active)
          const revision = await this.#cas(() => this.kv.put(key, bytes, { previousSeq: entry.revision }))
          if (revision !== null) return { routable: true, lease: active, revision }
          break // the lease moved: read it again at once
        }
        case 'wait':
          // `until`: the caller's "something may have changed" (a lease event, a node gone), so
          // that a node with thousands of providers waiting does not poll the store for each.
          await (opts.until?.(opts.signal) ?? delay(opts.pollMs ?? 200, undefined, { signal: opts.signal }))
      }
    }
  }

  /**
   * Called by the old owner after it stopped routing the session named in a handover addressed
   * to it: writes the lease `active`, so the newcomer routes. Returns the lease written, or null
   * when the lease no longer asks anything of this incarnation.
   */
  async confirmHandover(providerId: string, me: IncarnationRef): Promise<HeldLease | null> {
    return this.#rewrite(providerId, (lease) => (handoverDuty(lease, me, undefined) === null ? null : activeLease(lease)))
  }

  /**
   * Records a status change of `mine` on its lease, when it changes what decideRegistration would
   * answer (lease-decision.ts statusMatters); otherwise writes nothing. Returns the lease as it now
   * stands, or null when the lease no longer names `mine` (it was displaced).
   */
  async setStatus(providerId: string, mine: SessionRef, status: ProviderStatus): Promise<HeldLease | null> {
    return this.#rewrite(providerId, (lease) => (!sameSession(lease, mine) ? null : statusMatters(lease, status) ? { ...lease, status } : lease))
  }

  /**
   * Gives up `mine`'s lease when its socket closed. Keyed by the session, like Registry.remove:
   * the lease is deleted (or, in handover, kept as `unavailable`: lease-decision.ts releaseStep)
   * by compare-and-set on the revision just read, and only while it names `mine`. A late close
   * from a replaced socket finds another session named and changes nothing: returns false.
   */
  async release(providerId: string, mine: SessionRef): Promise<boolean> {
    const key = leaseKey(providerId)
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const entry = await this.#io(() => readLease(this.kv, key))
      if (entry.kind !== 'lease' || !sameSession(entry.lease, mine)) return false
      const step = releaseStep(entry.lease)
      const bytes = step.op === 'write' ? encodeLease(step.lease) : null
      const done = await this.#cas(async () => {
        if (bytes === null) await this.kv.delete(key, { previousSeq: entry.revision })
        else await this.kv.put(key, bytes, { previousSeq: entry.revision })
        return true
      })
      if (done !== null) return true
    }
    this.log.warn(
      { event: 'cluster.lease_release_busy', provider_id: providerId },
      'the session lease kept changing; its owner node deletes it once it is orphaned',
    )
    return false
  }

  /** Every lease change, starting with every current lease (lease-watch.ts). */
  watch(onEvent: (e: LeaseEvent) => void): Promise<LeaseWatch> {
    return this.#io(() => watchLeases(this.kv, onEvent, this.log))
  }

  /**
   * Read, transform, compare-and-set, up to ATTEMPTS times. `next` returns the lease to write, the
   * same object to write nothing, or null to give up (the lease is not ours to change).
   */
  async #rewrite(providerId: string, next: (lease: SessionLease) => SessionLease | null): Promise<HeldLease | null> {
    const key = leaseKey(providerId)
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const entry = await this.#io(() => readLease(this.kv, key))
      if (entry.kind !== 'lease') return null
      const lease = next(entry.lease)
      if (lease === null) return null
      if (lease === entry.lease) return { lease, revision: entry.revision }
      const bytes = encodeLease(lease)
      const revision = await this.#cas(() => this.kv.put(key, bytes, { previousSeq: entry.revision }))
      if (revision !== null) return { lease, revision }
    }
    return null
  }

  async #withLiveness(entry: LeaseEntry): Promise<CurrentLease> {
    if (entry.kind !== 'lease') return { kind: entry.kind }
    const { lease } = entry
    const [ownerLive, prevLive] = await this.#io(() => Promise.all([this.live(lease), lease.prev === undefined ? false : this.live(lease.prev)]))
    return { kind: 'lease', lease, ownerLive, prevLive }
  }

  /** A compare-and-set: its result, or null when another writer got there first. */
  async #cas<T>(write: () => Promise<T>): Promise<T | null> {
    try {
      return await this.#io(write)
    } catch (err) {
      if (err instanceof NatsUnavailableError && isWrongLastSequence(err.cause)) return null
      throw err
    }
  }

  /** Fails closed: at once while the link is down (a request would only wait out its timeout), and on any error. */
  async #io<T>(op: () => Promise<T>): Promise<T> {
    if (this.link.status !== 'connected') throw new NatsUnavailableError(this.link.servers, new Error(`the NATS link is ${this.link.status}`))
    try {
      return await op()
    } catch (err) {
      throw err instanceof CoordinatorError ? err : new NatsUnavailableError(this.link.servers, err)
    }
  }
}
