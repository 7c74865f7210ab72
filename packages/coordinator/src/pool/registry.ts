import type { FailureReason } from '@poolcoord/protocol'
import type { Heartbeat } from './provider-report.js'
import { decideRegistration } from './eviction.js'
import type { ProviderSession } from './provider-session.js'
import { afterFailure, afterSuccess, type Health } from './provider-health.js'

export type RegisterResult<H> =
  | { registered: true; displaced: { session: ProviderSession; handle: H } | null }
  | { registered: false; reason: 'duplicate_never_displaces' | 'bearer_downgrade' | 'key_downgrade' }

interface Entry<H> {
  session: ProviderSession
  handle: H
  /** Where the session sits in `list`. */
  index: number
}

/**
 * The live pool: one session per provider_id, also indexed by assigned_id. Each entry carries an
 * opaque handle (the socket, for the shell that owns it). Every mutation names both ids, so a
 * stale connection's late close or frame can never touch the session that replaced it.
 */
export class Registry<H> {
  private readonly byProvider = new Map<string, Entry<H>>()
  private readonly byAssigned = new Map<string, Entry<H>>()
  /**
   * Failure history per provider_id, kept after its session leaves: a provider must not shed its
   * cooldown by reconnecting. Entries go once their cooldown has passed.
   */
  private readonly health = new Map<string, Health>()
  /**
   * The live sessions in random order, kept in step with byProvider: selection samples a run of
   * it (select-provider.ts), and connection order must not decide who competes with whom. A new
   * session is swapped into a random place, a removal is swapped with the last; O(1) each.
   */
  private readonly list: ProviderSession[] = []
  private readonly listEntries: Entry<H>[] = []

  /** Moves on every register and remove: a view built from the pool knows when to rebuild. */
  version = 0
  /**
   * Moves on every change the ejection cap reads (pool/ejection-cap.ts): membership, a failure or
   * a success that clears one, a cordon, a drain, and a heartbeat that changes a session's models
   * or moves it between ready/busy and any other status. Slot counts and busy/ready do not move
   * it: they are load, which the cap ignores.
   */
  routingVersion = 0

  constructor(private readonly random: () => number = Math.random) {}

  get size(): number {
    return this.byProvider.size
  }

  register(session: ProviderSession, handle: H): RegisterResult<H> {
    const existing = this.byProvider.get(session.providerId)
    const decision = decideRegistration(existing?.session, session.authState)
    if (decision.action === 'refuse') return { registered: false, reason: decision.reason }
    if (existing) this.byAssigned.delete(existing.session.assignedId)
    const past = this.health.get(session.providerId)
    if (past !== undefined) Object.assign(session, past)
    const entry: Entry<H> = { session, handle, index: existing?.index ?? this.list.length }
    if (existing) {
      this.list[entry.index] = session
      this.listEntries[entry.index] = entry
    } else {
      this.list.push(session)
      this.listEntries.push(entry)
      this.swap(entry.index, Math.floor(this.random() * this.list.length))
    }
    this.byProvider.set(session.providerId, entry)
    this.byAssigned.set(session.assignedId, entry)
    this.version++
    this.routingVersion++
    return { registered: true, displaced: existing ?? null }
  }

  /** Removes the session only if it is still the current one for its provider_id. */
  remove(providerId: string, assignedId: string): boolean {
    const entry = this.current(providerId, assignedId)
    if (!entry) return false
    this.byProvider.delete(providerId)
    this.byAssigned.delete(assignedId)
    this.swap(entry.index, this.list.length - 1)
    this.list.pop()
    this.listEntries.pop()
    this.version++
    this.routingVersion++
    return true
  }

  get(providerId: string): ProviderSession | undefined {
    return this.byProvider.get(providerId)?.session
  }

  getByAssigned(assignedId: string): ProviderSession | undefined {
    return this.byAssigned.get(assignedId)?.session
  }

  handle(providerId: string, assignedId: string): H | undefined {
    return this.current(providerId, assignedId)?.handle
  }

  /** Any inbound frame proves the connection alive, heartbeat or not. */
  touch(providerId: string, assignedId: string, now: number): boolean {
    const entry = this.current(providerId, assignedId)
    if (entry) entry.session.lastInboundAt = now
    return entry !== undefined
  }

  applyHeartbeat(providerId: string, assignedId: string, hb: Heartbeat, now: number): boolean {
    const entry = this.current(providerId, assignedId)
    if (!entry) return false
    const s = entry.session
    if ((hb.models && !sameList(hb.models, s.models)) || loadOnly(s.status) !== loadOnly(hb.status)) this.routingVersion++
    s.status = hb.status
    s.slotsFree = hb.slotsFree
    s.slotsTotal = hb.slotsTotal
    if (hb.models) {
      s.models = hb.models
      s.modelId = hb.models[0] as string
    }
    s.lastHeartbeatAt = now
    s.lastInboundAt = now
    return true
  }

  /** Takes a dispatch slot on the session, only if it is still the current one for its id. */
  acquire(providerId: string, assignedId: string): boolean {
    const entry = this.current(providerId, assignedId)
    if (entry) entry.session.inFlight++
    return entry !== undefined
  }

  /**
   * Gives back a slot taken by acquire. It is returned to the session object it was taken on,
   * even if that session has since been replaced: the successor's count is never touched.
   */
  release(session: ProviderSession): void {
    session.inFlight = Math.max(0, session.inFlight - 1)
  }

  /**
   * Records how an attempt by providerId ended, for the failure cooldown: `failure` is the
   * provider's fault, null for a complete answer. Applies to the id's current session, if any,
   * and to its history, which a later session of the same id inherits.
   */
  recordOutcome(providerId: string, failure: FailureReason | null, now: number): void {
    const prev = this.health.get(providerId) ?? this.byProvider.get(providerId)?.session ?? afterSuccess()
    const ok = failure === null
    // A success on a clean record changes nothing (the usual case, on every answer): nothing to
    // write, and it must not make the ejection cap recompute. A session fresh from admission has
    // no lastFailure or failingSince yet: that is clean too.
    if (ok && prev.consecutiveFailures === 0 && prev.cooldownUntil === 0 && (prev.lastFailure ?? null) === null && (prev.failingSince ?? 0) === 0) return
    this.routingVersion++
    const next = ok ? afterSuccess() : afterFailure(prev, now, failure)
    const entry = this.byProvider.get(providerId)
    if (entry) Object.assign(entry.session, next)
    if (ok) this.health.delete(providerId)
    else {
      this.health.set(providerId, next)
      if (this.health.size > 10_000) for (const [id, h] of this.health) if (h.cooldownUntil <= now) this.health.delete(id)
    }
  }

  /** The provider said its queue is full: no new work until its next heartbeat says otherwise. */
  markBusy(providerId: string, assignedId: string): void {
    const entry = this.current(providerId, assignedId)
    if (entry && entry.session.status === 'ready') entry.session.status = 'busy'
  }

  /** Sets the cordon on the live session of providerId, if any. Returns whether there was one. */
  setCordoned(providerId: string, cordoned: boolean): boolean {
    const entry = this.byProvider.get(providerId)
    if (entry && entry.session.cordoned !== cordoned) {
      entry.session.cordoned = cordoned
      this.routingVersion++
    }
    return entry !== undefined
  }

  /** Marks the current session draining: no new work, whatever its heartbeats say. */
  requestDrain(providerId: string, assignedId: string): boolean {
    const entry = this.current(providerId, assignedId)
    if (entry && !entry.session.drainRequested) {
      entry.session.drainRequested = true
      this.routingVersion++
    }
    return entry !== undefined
  }

  /** The live pool without copying it; for the per-request selection scan. */
  *liveSessions(): IterableIterator<ProviderSession> {
    for (const e of this.byProvider.values()) yield e.session
  }

  /** Every live session, in random order. The array is the registry's own: read it, never keep it. */
  sessionList(): readonly ProviderSession[] {
    return this.list
  }

  private swap(i: number, j: number): void {
    if (i === j) return
    const a = this.listEntries[i]!
    const b = this.listEntries[j]!
    this.listEntries[i] = b
    this.listEntries[j] = a
    this.list[i] = b.session
    this.list[j] = a.session
    a.index = j
    b.index = i
  }

  sessions(): ProviderSession[] {
    return [...this.byProvider.values()].map((e) => e.session)
  }

  entries(): IterableIterator<Entry<H>> {
    return this.byProvider.values()
  }

  private current(providerId: string, assignedId: string): Entry<H> | undefined {
    const entry = this.byProvider.get(providerId)
    return entry && entry.session.assignedId === assignedId ? entry : undefined
  }
}

/** ready and busy differ only in load; every other status keeps a session from routing. */
function loadOnly(status: ProviderSession['status']): boolean {
  return status === 'ready' || status === 'busy'
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i])
}
