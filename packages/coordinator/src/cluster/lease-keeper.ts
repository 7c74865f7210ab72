import { setTimeout as delay } from 'node:timers/promises'
import { Close, type CloseSpec, type ProviderStatus } from '@poolcoord/protocol'
import type { Logger } from '../logger.js'
import { handoverDuty, isOrphan, sessionVerdict, type Claimant } from './lease-decision.js'
import { sessionRef, type IncarnationRef, type SessionLease, type SessionRef } from './lease-value.js'
import type { NodeLiveness } from './node-liveness.js'
import type { ClaimResult, LeaseEvent, LeaseWatch, RoutableResult, SessionLeases } from './session-leases.js'

/** What the keeper needs of the node's own pool: the session it holds for an id, and a way to close it. */
export interface LocalSessions {
  get(providerId: string): { assignedId: string } | undefined
  /** Removes the session from the pool and closes its socket, if it is still the one held for the id. */
  close(providerId: string, assignedId: string, spec: CloseSpec): void
}

export type ClaimOutcome = 'create' | 'take_over_dead' | 'replace_with_handover' | 'refused' | 'busy' | 'unreadable' | 'error'

export interface LeaseKeeperHooks {
  /** A lease changed: the cluster view must be rebuilt. */
  changed(providerId: string): void
  claimed(outcome: ClaimOutcome): void
}

/**
 * The node's side of session ownership (specs/cluster.md §7): the one lease watch, and the duties
 * it brings; the claims of this node's admissions; and releases on close.
 *
 * - A handover addressed to this incarnation: close the named local session 4006, *then* confirm,
 *   which is what lets the newcomer on the other node route.
 * - A lease that moved past a local session (a revision newer than the one that made it ours,
 *   naming someone else): that session was displaced; close it 4006.
 * - An orphan (an active lease naming this incarnation but no session it holds or is claiming):
 *   delete it, so it cannot block the provider's next tokenless claim.
 *
 * `current` mirrors every lease as the watch last delivered it: the cluster view reads it to show
 * at most one routable session per provider_id.
 */
export class LeaseKeeper {
  readonly current = new Map<string, SessionLease>()
  /** Local sessions that hold, or wait for, their id's lease: the revision that made it theirs. */
  readonly #held = new Map<string, { assignedId: string; revision: number; displaced?: boolean }>()
  /** Claims in flight, by provider_id: their leases may land before they return. */
  readonly #claiming = new Map<string, number>()
  readonly #waits = new Map<string, AbortController>()
  /** Sessions in handover waiting for a reason to read their lease again, by provider_id. */
  readonly #changeWaiters = new Map<string, Set<() => void>>()
  /** Moves on every lease event for the id (and, globally, on every membership change): a wait compares it with what it saw before its last read. */
  readonly #changes = new Map<string, number>()
  #nodeChanges = 0
  /** Status writes, one at a time per provider_id; `again` asks for one more run with the then current status. */
  readonly #statusWrites = new Map<string, { again: boolean; mine: SessionRef; status: () => ProviderStatus }>()
  #watch: LeaseWatch | null = null
  #stopped = false

  constructor(
    private readonly leases: SessionLeases,
    private readonly node: NodeLiveness,
    private readonly local: LocalSessions,
    private readonly hooks: LeaseKeeperHooks,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    // A node left or changed incarnation: a newcomer waiting on it may now take over.
    this.node.on('nodes', () => this.#wake(null))
    this.#watch = await this.leases.watch((e) => this.#onEvent(e))
    void this.#rewatch(this.#watch)
  }

  /** NATS came back: a watch that outlived the outage may have missed nothing, or may be dead; a new one replays every lease. */
  async resync(): Promise<void> {
    const old = this.#watch
    try {
      // Rebuilt by the new watch's replay; until then no remote row is named, the safe side.
      this.current.clear()
      this.#watch = await this.leases.watch((e) => this.#onEvent(e))
      old?.stop()
      void this.#rewatch(this.#watch)
    } catch (err) {
      this.log.warn({ event: 'cluster.lease_resync_failed', err }, 'could not restart the lease watch; the old one goes on')
    }
  }

  stop(): void {
    this.#stopped = true
    this.#watch?.stop()
    for (const c of this.#waits.values()) c.abort()
  }

  me(): IncarnationRef {
    return { node_id: this.node.nodeId, incarnation: this.node.incarnation }
  }

  /** Is a self-minted session of this id live anywhere in the cluster? (admission.md §3.2, cluster form.) */
  async liveSelfMinted(providerId: string): Promise<boolean> {
    const c = await this.leases.readLive(providerId)
    return c.kind === 'lease' && c.ownerLive && c.lease.auth_state === 'self_minted'
  }

  /** Claims the id's lease for a session this node is admitting. Throws NatsUnavailableError: fail closed. */
  async claim(providerId: string, claimant: Claimant): Promise<ClaimResult> {
    this.#claiming.set(providerId, (this.#claiming.get(providerId) ?? 0) + 1)
    try {
      const r = await this.leases.claim(providerId, claimant)
      this.hooks.claimed(r.ok ? r.action : r.reason === 'busy' ? 'busy' : r.reason === 'lease_unreadable' ? 'unreadable' : 'refused')
      if (r.ok) this.#held.set(providerId, { assignedId: claimant.assigned_id, revision: r.revision })
      return r
    } catch (err) {
      this.hooks.claimed('error')
      throw err
    } finally {
      const n = (this.#claiming.get(providerId) ?? 1) - 1
      if (n === 0) this.#claiming.delete(providerId)
      else this.#claiming.set(providerId, n)
    }
  }

  /**
   * Waits until a session admitted in handover may route (§7.4). Aborted by release(). Between
   * reads of the lease it waits for a reason to read again: a watch event for the id (the old
   * holder confirmed, or a newer claim displaced us), a change in the nodes' membership (the old
   * holder's incarnation may be dead), or `pollMs` at the latest. After a node crash thousands of
   * providers wait here at once; a fixed fast poll would put thousands of reads a second on the
   * JetStream leader that every node's renewals also need.
   */
  async awaitRoutable(providerId: string, mine: SessionRef, pollMs: number): Promise<RoutableResult> {
    const ctl = new AbortController()
    this.#waits.set(mine.assigned_id, ctl)
    try {
      // An event that arrives while a read is in flight must not be missed: the stamp taken
      // before each read tells whether to read again at once.
      let seen = this.#stamp(providerId)
      const until = async (signal: AbortSignal | undefined): Promise<void> => {
        if (this.#stamp(providerId) === seen) await this.#nextChange(providerId, pollMs, signal)
        seen = this.#stamp(providerId)
      }
      const r = await this.leases.awaitRoutable(providerId, mine, { signal: ctl.signal, until })
      const held = this.#held.get(providerId)
      if (r.routable && held?.assignedId === mine.assigned_id) held.revision = Math.max(held.revision, r.revision)
      return r
    } finally {
      this.#waits.delete(mine.assigned_id)
    }
  }

  /**
   * Did a handover name this claimed session as `prev` before it entered the pool? Then it must
   * never route: admission gives up (and release() confirms the handover). Checked in the same
   * synchronous step as the registration, so no event can slip in between.
   */
  displacedBeforeRegistration(providerId: string, assignedId: string): boolean {
    const held = this.#held.get(providerId)
    return held?.assignedId === assignedId && held.displaced === true
  }

  /** This node let go of its own session named as `prev` (same-node replacement): confirm now rather than on the watch. */
  confirmOwnHandover(providerId: string): void {
    this.leases.confirmHandover(providerId, this.me()).catch((err: unknown) => this.#logFailure('confirm', providerId, err))
  }

  /** The session's socket closed: give its lease up, if it still names it. Never throws. */
  release(providerId: string, mine: SessionRef): void {
    this.#waits.get(mine.assigned_id)?.abort()
    const held = this.#held.get(providerId)
    if (held?.assignedId === mine.assigned_id) this.#held.delete(providerId)
    const confirm = held?.assignedId === mine.assigned_id && held.displaced === true
    this.leases
      .release(providerId, mine)
      // A handover that named this session while it was not yet in the pool waited for this.
      .then(() => (confirm ? this.leases.confirmHandover(providerId, this.me()) : null))
      .catch((err: unknown) => this.#logFailure('release', providerId, err))
  }

  /**
   * A heartbeat changed the session's status: record it on the lease when it matters (§7.6).
   * Writes for one id run one at a time, and each writes the status as it is when it runs, read
   * through `status()`: two writes racing on one revision could otherwise leave the lease saying
   * `draining` for a session that is `ready` again, which would let a weaker credential replace
   * it. A failed write is retried every second while the session holds the lease.
   */
  setStatus(providerId: string, mine: SessionRef, status: () => ProviderStatus): void {
    const running = this.#statusWrites.get(providerId)
    if (running !== undefined) {
      // The loop running for the id writes this one next, even if it was started for an earlier session.
      Object.assign(running, { again: true, mine, status })
      return
    }
    const state = { again: false, mine, status }
    this.#statusWrites.set(providerId, state)
    void (async () => {
      try {
        for (let failures = 0; ;) {
          state.again = false
          if (this.#stopped || this.#held.get(providerId)?.assignedId !== state.mine.assigned_id) return
          try {
            await this.leases.setStatus(providerId, state.mine, state.status())
            failures = 0
            if (!state.again) return
          } catch (err) {
            if (failures++ === 0) this.#logFailure('status', providerId, err)
            await delay(1000)
          }
        }
      } finally {
        this.#statusWrites.delete(providerId)
      }
    })()
  }

  /** The node fenced: every session it held was closed, and its incarnation's leases are void. */
  fenced(): void {
    this.#held.clear()
    for (const c of this.#waits.values()) c.abort()
  }

  #onEvent({ providerId, entry }: LeaseEvent): void {
    const lease = entry.kind === 'lease' ? entry.lease : null
    if (lease === null) this.current.delete(providerId)
    else this.current.set(providerId, lease)
    this.hooks.changed(providerId)
    this.#wake(providerId)
    if (lease === null) return
    const me = this.me()
    const local = this.local.get(providerId)
    const held = this.#held.get(providerId)
    // Handover duties are done even while not live: letting go is always safe, and a duty dropped
    // in a moment of lag (a late renewal that turns the node live again) would leave the
    // newcomer waiting for as long as this incarnation lives.
    const duty = handoverDuty(lease, me, local?.assignedId)
    if (duty !== null) {
      const prev = lease.prev
      if (duty.close === null && held !== undefined && held.assignedId !== local?.assignedId && prev?.assigned_id === held.assignedId) {
        // Our claim for it is won but not yet in the pool: it must never route. Admission sees
        // this before it registers and gives up; its release then confirms.
        held.displaced = true
        return
      }
      // Close first: confirming is what lets the newcomer route.
      if (duty.close !== null) this.local.close(providerId, duty.close, Close.replaced)
      this.leases.confirmHandover(providerId, me).catch((err: unknown) => this.#logFailure('confirm', providerId, err))
      return
    }
    if (!this.node.isLive()) return
    if (local !== undefined && held?.assignedId === local.assignedId && entry.revision > held.revision) {
      const mine = { ...me, assigned_id: local.assignedId }
      if (sessionVerdict(lease, mine, false) === 'displaced') {
        this.log.info({ event: 'cluster.session_displaced', provider_id: providerId, assigned_id: local.assignedId }, 'a newer session took the lease')
        this.#held.delete(providerId)
        this.local.close(providerId, local.assignedId, Close.replaced)
        return
      }
    }
    // A lease this node just won is held before its session is registered: not an orphan.
    if (held?.assignedId === lease.assigned_id) return
    if (!this.#claiming.has(providerId) && isOrphan(lease, me, local?.assignedId)) {
      this.log.info({ event: 'cluster.lease_orphan', provider_id: providerId }, 'deleting a lease of this node that names no session it holds')
      this.leases.release(providerId, sessionRef(lease)).catch((err: unknown) => this.#logFailure('orphan', providerId, err))
    }
  }

  /** A watch that ends by itself is replaced: it replays every lease, so nothing addressed to us is missed for good. */
  async #rewatch(watch: LeaseWatch): Promise<void> {
    const err = await watch.ended
    if (this.#stopped || this.#watch !== watch) return
    this.log.warn({ event: 'cluster.lease_watch_ended', err }, 'the session lease watch ended; starting a new one')
    while (!this.#stopped) {
      await delay(1000)
      if (this.#stopped) return
      try {
        this.#watch = await this.leases.watch((e) => this.#onEvent(e))
        void this.#rewatch(this.#watch)
        return
      } catch (e) {
        this.log.debug({ event: 'cluster.lease_watch_retry', err: e }, 'could not start the lease watch yet')
      }
    }
  }

  #nextChange(providerId: string, pollMs: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer)
        signal?.removeEventListener('abort', aborted)
        const list = this.#changeWaiters.get(providerId)
        list?.delete(done)
        if (list?.size === 0) this.#changeWaiters.delete(providerId)
        resolve()
      }
      const aborted = (): void => {
        done()
        reject(signal?.reason)
      }
      // Jittered, so that thousands of waits started together do not read together.
      const timer = setTimeout(done, pollMs * (0.75 + Math.random() / 2))
      signal?.addEventListener('abort', aborted, { once: true })
      let list = this.#changeWaiters.get(providerId)
      if (list === undefined) this.#changeWaiters.set(providerId, (list = new Set()))
      list.add(done)
    })
  }

  #stamp(providerId: string): number {
    return (this.#changes.get(providerId) ?? 0) + this.#nodeChanges
  }

  #wake(providerId: string | null): void {
    // Stamps matter only while some session waits; without one the map is emptied, so it stays bounded.
    if (providerId === null) this.#nodeChanges++
    else if (this.#waits.size > 0) this.#changes.set(providerId, (this.#changes.get(providerId) ?? 0) + 1)
    else if (this.#changes.size > 0) this.#changes.clear()
    const lists = providerId === null ? [...this.#changeWaiters.values()] : [this.#changeWaiters.get(providerId)]
    for (const list of lists) for (const done of [...(list ?? [])]) done()
  }

  #logFailure(op: string, providerId: string, err: unknown): void {
    this.log.warn({ event: 'cluster.lease_op_failed', op, provider_id: providerId, err }, 'a session lease operation failed')
  }
}
