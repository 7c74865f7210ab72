import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node'
import { InFlightTable, encode, type CancelReason } from '@poolcoord/protocol'
import type { Logger } from '../logger.js'
import type { ProviderLink } from '../pool/provider-link.js'
import type { Registry } from '../pool/registry.js'
import { routingEligible } from '../pool/routing-eligible.js'
import type { AttemptEvent, AttemptHandle, AttemptTarget } from '../routing/attempt.js'
import {
  cancelSubject,
  dispatchSubject,
  encodeEvents,
  eventsSubject,
  parseCancel,
  parseDispatch,
  type DispatchMeta,
  type DispatchReply,
  type EventKind,
  type NodeEvent,
} from './node-messages.js'

export type ServedOutcome = 'accepted' | DispatchReplyReason | 'origin_dead'
type DispatchReplyReason = Extract<DispatchReply, { accepted: false }>['reason']

export interface RemoteServerDeps {
  nc: NatsConnection
  nodeId: string
  /** May this node route now (node-liveness.ts isLive)? Checked on every dispatch. */
  isLive: () => boolean
  /** Has this node incarnation died since `since` (performance.now())? Only on positive evidence (cluster-node.ts originDead). */
  originDead: (nodeId: string, incarnation: string, since: number) => boolean
  registry: Registry<ProviderLink>
  /** The node's own sockets (routing/dispatcher.ts). */
  local: AttemptTarget
  maxFrameBytes: number
  keepaliveMs: number
  served: (o: ServedOutcome) => void
  log: Logger
}

interface Served {
  readonly meta: DispatchMeta
  readonly subject: string
  handle: AttemptHandle | null
  seq: number
  lastSentAt: number
  readonly startedAt: number
  /** Events not sent yet: the ones that arrived in this turn of the event loop. */
  pending: NodeEvent[]
  /** A flush of `pending` is queued for the end of this turn of the event loop. */
  scheduled: boolean
  /** Sends a lone acceptance if the provider says nothing within ACCEPT_ALONE_AFTER_MS. */
  acceptTimer: NodeJS.Timeout | undefined
}

/**
 * The acceptance (`a`, seq 0) waits this long for the provider's first events, to travel in one
 * message with them: with a fast provider that saves a NATS message and a wake-up of the origin
 * per request. Far below the origin's 2 s answer deadline (remote-attempts.ts).
 */
const ACCEPT_ALONE_AFTER_MS = 50

/**
 * The owner's half of a remote attempt (specs/cluster.md §10). The owner is the only authority on
 * its sessions' slots: a dispatch from another node passes the same checks as a local one
 * (routingEligible on the current session, then the Dispatcher's), so max_concurrency holds
 * however many nodes dispatch at once. Events go back in order with a sequence number; an attempt
 * silent for a keepalive interval gets a keepalive, and one whose origin incarnation died is
 * cancelled, since nobody is left to read it.
 */
export class RemoteServer {
  readonly #served = new InFlightTable<Served>()
  /** Attempts with events waiting for the flush at the end of this turn of the event loop. */
  #toFlush: Served[] = []
  readonly #subs: Subscription[]
  readonly #timer: NodeJS.Timeout

  constructor(private readonly d: RemoteServerDeps) {
    this.#subs = [
      d.nc.subscribe(dispatchSubject(d.nodeId), { callback: (err, msg) => (err === null ? this.#onDispatch(msg) : undefined) }),
      d.nc.subscribe(cancelSubject(d.nodeId), { callback: (err, msg) => (err === null ? this.#onCancel(msg) : undefined) }),
    ]
    this.#timer = setInterval(() => this.#tick(), d.keepaliveMs)
    this.#timer.unref()
  }

  get serving(): number {
    return this.#served.size
  }

  /** The link went down: nothing this node sends reaches an origin (the client drops what it buffered), so every attempt it serves ends now. */
  cancelAll(): void {
    for (const s of this.#served.values()) this.#cancel(s, 'buyer_disconnected')
  }

  close(): void {
    clearInterval(this.#timer)
    for (const s of this.#subs) s.unsubscribe()
    for (const s of this.#served.values()) this.#cancel(s, 'buyer_disconnected')
  }

  #onDispatch(msg: Msg): void {
    const parsed = parseDispatch(msg.data, this.d.maxFrameBytes)
    if (!parsed.ok) return this.#reply(msg, { accepted: false, reason: 'invalid' })
    const { meta, frame } = parsed
    if (!this.d.isLive()) return this.#reply(msg, { accepted: false, reason: 'fenced' })
    if (this.#served.has(meta.attempt)) return this.#reply(msg, { accepted: false, reason: 'invalid' })
    const session = this.d.registry.get(meta.provider_id)
    if (session === undefined || session.assignedId !== meta.assigned_id) return this.#reply(msg, { accepted: false, reason: 'not_current' })
    if (!routingEligible(session).eligible) return this.#reply(msg, { accepted: false, reason: 'ineligible' })
    const served: Served = {
      meta,
      subject: eventsSubject(meta.origin, meta.attempt),
      handle: null,
      // seq 0 is the answer (`a`), sent below.
      seq: 1,
      lastSentAt: performance.now(),
      startedAt: performance.now(),
      pending: [],
      scheduled: false,
      acceptTimer: undefined,
    }
    let handle: AttemptHandle | null
    try {
      handle = this.d.local.dispatch(session, { requestId: meta.request_id, frame }, (e) => this.#onEvent(served, e))
    } catch (err) {
      // The request id is already in flight here: a duplicate, never a second dispatch.
      this.d.log.warn({ err, provider_id: meta.provider_id }, 'refused a remote dispatch')
      handle = null
    }
    if (handle === null) return this.#reply(msg, { accepted: false, reason: 'unreachable' })
    served.handle = handle
    this.#served.set(meta.attempt, served)
    this.d.served('accepted')
    served.pending.push({ kind: 'a', seq: 0, payload: '' })
    served.acceptTimer = setTimeout(() => this.#flush(served), ACCEPT_ALONE_AFTER_MS)
  }

  #onEvent(s: Served, e: AttemptEvent): void {
    switch (e.kind) {
      case 'chunk':
        return this.#send(s, 'c', e.data)
      case 'end':
        this.#served.delete(s.meta.attempt)
        return this.#send(s, 'e', encode(e.end))
      case 'lost':
      case 'refused':
        this.#served.delete(s.meta.attempt)
        return this.#send(s, 'l')
    }
  }

  #onCancel(msg: Msg): void {
    const c = parseCancel(msg.data)
    const s = c === null ? undefined : this.#served.get(c.attempt)
    if (s !== undefined && c !== null) this.#cancel(s, c.reason)
  }

  #cancel(s: Served, reason: CancelReason): void {
    this.#served.delete(s.meta.attempt)
    clearTimeout(s.acceptTimer)
    s.handle?.cancel(reason)
  }

  #tick(): void {
    const quiet = performance.now() - this.d.keepaliveMs
    for (const s of this.#served.values()) {
      if (this.d.originDead(s.meta.origin, s.meta.origin_incarnation, s.startedAt)) {
        this.d.served('origin_dead')
        this.d.log.info({ event: 'cluster.origin_dead', provider_id: s.meta.provider_id, origin: s.meta.origin }, 'cancelling a request whose node died')
        this.#cancel(s, 'buyer_disconnected')
        // Should the origin be alive after all, it hears at once that the attempt is over.
        this.#send(s, 'l')
      } else if (s.lastSentAt <= quiet) this.#send(s, 'k')
    }
  }

  /**
   * Queues an event; the events an attempt gets in one turn of the event loop (a provider's chunks
   * arrive in bursts) go out as one message at its end (setImmediate). An end or a loss goes out
   * at once, with whatever was queued before it.
   */
  #send(s: Served, kind: EventKind, payload = ''): void {
    s.lastSentAt = performance.now()
    s.pending.push({ kind, seq: s.seq++, payload })
    if (kind === 'e' || kind === 'l') return this.#flush(s)
    if (s.scheduled) return
    s.scheduled = true
    this.#toFlush.push(s)
    if (this.#toFlush.length === 1) setImmediate(() => this.#flushAll())
  }

  #flushAll(): void {
    const list = this.#toFlush
    this.#toFlush = []
    for (const s of list) this.#flush(s)
  }

  #flush(s: Served): void {
    clearTimeout(s.acceptTimer)
    s.scheduled = false
    if (s.pending.length === 0) return
    const events = s.pending
    s.pending = []
    try {
      this.d.nc.publish(s.subject, encodeEvents(events))
    } catch (err) {
      // NATS is down: the origin sees silence and ends the attempt; cancel ours now.
      this.d.log.debug({ err }, 'could not relay a remote attempt event')
      if (this.#served.has(s.meta.attempt)) this.#cancel(s, 'buyer_disconnected')
    }
  }

  /** A refusal is seq 0 on the attempt's events subject, which the dispatch named as its reply-to (node-messages.ts). */
  #reply(msg: Msg, r: Extract<DispatchReply, { accepted: false }>): void {
    this.d.served(r.reason)
    try {
      msg.respond(encodeEvents([{ kind: 'r', seq: 0, payload: r.reason }]))
    } catch (err) {
      this.d.log.debug({ err }, 'could not answer a remote dispatch')
    }
  }
}
