import { randomUUID } from 'node:crypto'
import type { NatsConnection, Subscription } from '@nats-io/transport-node'
import { InFlightTable, decodeJson, parseProviderMessage, type CancelReason } from '@poolcoord/protocol'
import type { Logger } from '../logger.js'
import type { ProviderSession } from '../pool/provider-session.js'
import type { AttemptEvent, AttemptHandle, DispatchRequest } from '../routing/attempt.js'
import { cancelSubject, dispatchSubject, encodeCancel, encodeDispatch, eventsSubject, parseEvents, refusalOf, type NodeEvent } from './node-messages.js'

export interface RemoteTiming {
  /** How long the owner has to accept or refuse a dispatch. */
  replyTimeoutMs: number
  /** The owner sends a keepalive when an attempt has been silent this long; three missed ones mean lost. */
  keepaliveMs: number
}

export const defaultRemoteTiming: RemoteTiming = { replyTimeoutMs: 2_000, keepaliveMs: 2_000 }

export type RemoteOutcome = 'accepted' | 'refused' | 'no_responders' | 'disconnected' | 'timeout' | 'lost' | 'gap'

interface Running {
  readonly id: string
  readonly owner: string
  readonly session: ProviderSession
  readonly onEvent: (e: AttemptEvent) => void
  nextSeq: number
  /** When the dispatch was sent: an owner that answers nothing within replyTimeoutMs is given up. */
  readonly sentAt: number
  lastHeardAt: number
  accepted: boolean
  done: boolean
}

/**
 * The buyer's node's half of a remote attempt (specs/cluster.md §10): the provider's socket is on
 * another node, its owner. It subscribes to the attempt's events subject *before* it sends the
 * dispatch, so nothing the owner sends can be missed, then presents the owner's events to the
 * exchange as an ordinary attempt: the exchange never knows the provider is remote.
 *
 * - A refusal, no responders (the owner is gone) or no answer in time: `refused`, before the
 *   provider saw anything, so the exchange may fail over.
 * - A gap in the event sequence (core NATS is at-most-once) or three keepalive intervals of
 *   silence: `lost`, and the owner is told to cancel.
 * - The subscription's callback never waits for the buyer: the exchange's sink applies the
 *   unread-bytes limit and withdraws the attempt, which becomes a cancel to the owner.
 *
 * The slot count on our copy of the session moves with our own attempts, so that selection here
 * sees them before the owner's next snapshot does.
 */
export class RemoteAttempts {
  readonly #running = new InFlightTable<Running>()
  readonly #timer: NodeJS.Timeout
  /**
   * One subscription for the events of every attempt this node runs elsewhere, routed by attempt
   * id: a subscription per attempt cost the NATS server a subscribe and an unsubscribe per
   * request, about as much as a whole request on one node (bench/, cluster section). It exists
   * before any dispatch is sent, so nothing an owner sends can be missed.
   */
  readonly #sub: Subscription
  readonly #prefix: string
  #idleWaiters: Array<() => void> = []

  constructor(
    private readonly nc: NatsConnection,
    private readonly me: { nodeId: string; incarnation: () => string; connected: () => boolean },
    private readonly outcome: (o: RemoteOutcome) => void,
    private readonly log: Logger,
    private readonly timing: RemoteTiming = defaultRemoteTiming,
    private readonly now: () => number = () => performance.now(),
  ) {
    // Four times a second: an unanswered dispatch is given up within replyTimeoutMs + 250 ms.
    this.#timer = setInterval(() => this.#checkSilence(), Math.min(250, timing.keepaliveMs))
    this.#timer.unref()
    this.#prefix = eventsSubject(me.nodeId, '')
    this.#sub = nc.subscribe(`${this.#prefix}*`, {
      callback: (err, msg) => {
        if (err !== null) return
        const a = this.#running.get(msg.subject.slice(this.#prefix.length))
        if (a === undefined) return
        // NATS's own answer to a dispatch nobody subscribes to: the owner is gone.
        if (msg.data.length === 0 && msg.headers?.code === 503) return this.#noResponders(a)
        this.#onMessage(a, msg.data)
      },
    })
  }

  get inFlight(): number {
    return this.#running.size
  }

  /** Resolves once no attempt of this node runs on another node: for the drain on SIGTERM. */
  whenIdle(): Promise<void> {
    if (this.#running.size === 0) return Promise.resolve()
    return new Promise((resolve) => this.#idleWaiters.push(resolve))
  }

  dispatch(session: ProviderSession, req: DispatchRequest, onEvent: (e: AttemptEvent) => void): AttemptHandle {
    const owner = session.nodeId as string
    const id = randomUUID().replaceAll('-', '')
    const now = this.now()
    const a: Running = { id, owner, session, onEvent, nextSeq: 0, sentAt: now, lastHeardAt: now, accepted: false, done: false }
    this.#running.set(id, a)
    session.inFlight++
    const body = encodeDispatch(
      {
        attempt: id,
        request_id: req.requestId,
        provider_id: session.providerId,
        assigned_id: session.assignedId,
        origin: this.me.nodeId,
        origin_incarnation: this.me.incarnation(),
      },
      req.frame,
    )
    // While the link is down the client only buffers, and drops the buffer when it reconnects:
    // refuse now (on the next turn, as an answer would come) so the exchange fails over at once.
    if (!this.me.connected()) {
      queueMicrotask(() => this.#noResponders(a, 'disconnected'))
    } else {
      try {
        this.nc.publish(dispatchSubject(owner), body, { reply: eventsSubject(this.me.nodeId, id) })
      } catch {
        queueMicrotask(() => this.#noResponders(a, 'disconnected'))
      }
    }
    return {
      session,
      cancel: (reason) => {
        if (a.done) return
        this.#finish(a)
        this.#sendCancel(a, reason)
      },
    }
  }

  /** Every attempt in flight ends as lost: the link to the other nodes is gone (fence, shutdown). */
  abortAll(): void {
    for (const a of this.#running.values()) this.#lose(a, 'lost')
  }

  close(): void {
    clearInterval(this.#timer)
    this.#sub.unsubscribe()
    this.abortAll()
  }

  #onMessage(a: Running, data: Uint8Array): void {
    const events = parseEvents(data)
    if (events === null) return this.#lose(a, 'gap')
    for (const e of events) {
      if (a.done) return
      this.#onEvent(a, e)
    }
  }

  #onEvent(a: Running, e: NodeEvent): void {
    if (e.seq !== a.nextSeq) return this.#lose(a, 'gap')
    a.nextSeq++
    a.lastHeardAt = this.now()
    if (e.kind === 'r') {
      this.outcome('refused')
      if (refusalOf(e.payload) === null) this.log.debug({ attempt: a.id }, 'an owner refused with an unknown reason')
      return this.#refuse(a)
    }
    if (!a.accepted) this.outcome('accepted')
    a.accepted = true
    switch (e.kind) {
      case 'a':
        return
      case 'k':
        return
      case 'c':
        return this.#emit(a, { kind: 'chunk', data: e.payload })
      case 'l':
        this.#finish(a)
        return this.#emit(a, { kind: 'lost' })
      case 'e': {
        const json = decodeJson(Buffer.from(e.payload))
        const parsed = json === null ? null : parseProviderMessage(json)
        if (parsed === null || !parsed.ok || parsed.value?.type !== 'inference_response_end') return this.#lose(a, 'gap')
        this.#finish(a)
        return this.#emit(a, { kind: 'end', end: parsed.value })
      }
    }
  }

  #checkSilence(): void {
    const now = this.now()
    const limit = now - 3 * this.timing.keepaliveMs
    for (const a of this.#running.values()) {
      if (a.accepted) {
        if (a.lastHeardAt < limit) this.#lose(a, 'lost')
      } else if (now - a.sentAt >= this.timing.replyTimeoutMs) {
        // No answer: the dispatch may have reached the owner and only the answer was lost, so tell it to stop.
        this.outcome('timeout')
        this.#sendCancel(a, 'timeout')
        this.#refuse(a)
      }
    }
  }

  #noResponders(a: Running, why: 'no_responders' | 'disconnected' = 'no_responders'): void {
    if (a.done || a.accepted) return
    this.outcome(why)
    this.#refuse(a)
  }

  #refuse(a: Running): void {
    if (a.done) return
    this.#finish(a)
    this.#emit(a, { kind: 'refused' })
  }

  #lose(a: Running, why: 'lost' | 'gap'): void {
    if (a.done) return
    this.outcome(why)
    this.#finish(a)
    this.#sendCancel(a, 'timeout')
    this.#emit(a, { kind: 'lost' })
  }

  #finish(a: Running): void {
    a.done = true
    this.#running.delete(a.id)
    a.session.inFlight = Math.max(0, a.session.inFlight - 1)
    if (this.#running.size === 0 && this.#idleWaiters.length > 0) {
      const waiters = this.#idleWaiters
      this.#idleWaiters = []
      for (const resolve of waiters) queueMicrotask(resolve)
    }
  }

  #sendCancel(a: Running, reason: CancelReason): void {
    try {
      this.nc.publish(cancelSubject(a.owner), encodeCancel({ attempt: a.id, reason }))
    } catch (err) {
      // NATS is down: the owner cancels by itself once this node's incarnation is dead.
      this.log.debug({ err, attempt: a.id }, 'could not send a cancel to the owner node')
    }
  }

  #emit(a: Running, e: AttemptEvent): void {
    try {
      a.onEvent(e)
    } catch (err) {
      this.log.error({ err, provider_id: a.session.providerId }, 'request handler failed')
    }
  }
}
