import type { Logger } from '../logger.js'
import type { ProviderSession } from '../pool/provider-session.js'
import type { ProviderLink } from '../pool/provider-link.js'
import type { Registry } from '../pool/registry.js'
import { InFlightTable, cancelRequest, encode, type ResponseChunkMessage, type ResponseEndMessage } from '@poolcoord/protocol'
import type { AttemptEvent, AttemptHandle, AttemptTarget, DispatchRequest } from './attempt.js'

/** What a provider was doing when its socket closed: the label of provider_disconnects_total. */
export type DisconnectPhase = 'idle' | 'before_first_chunk' | 'mid_response'

interface Attempt {
  readonly requestId: string
  readonly session: ProviderSession
  readonly link: ProviderLink
  readonly onEvent: (e: AttemptEvent) => void
  lastSeq: number
  done: boolean
}

/**
 * The table of requests in flight on provider sockets. It takes a slot at dispatch and gives it
 * back exactly once: on the provider's end, on the socket's close, or on the exchange's cancel.
 *
 * A provider can only speak for its own requests: a chunk or end is matched on request_id *and*
 * on the session it was dispatched to, so one provider cannot inject bytes into, or end,
 * another's request. Late frames for a finished request are ignored.
 */
export class Dispatcher implements AttemptTarget {
  // InFlightTable, not Map or Set, for what changes on every request (see there). The table of a
  // session is made once and lives as long as the session object.
  private readonly byId = new InFlightTable<Attempt>()
  private readonly bySession = new WeakMap<ProviderSession, InFlightTable<Attempt>>()
  private readonly idleWaiters = new Map<ProviderSession | null, Array<() => void>>()

  constructor(
    private readonly registry: Registry<ProviderLink>,
    private readonly maxProviderBacklogBytes: number,
    private readonly log: Logger,
  ) {}

  /** Attempts in flight across the pool. */
  get inFlight(): number {
    return this.byId.size
  }

  /**
   * Sends inference_request and takes a slot. Returns null, having taken nothing, when the
   * session is gone or replaced, its socket is not open, or it is not reading what we send.
   */
  dispatch(session: ProviderSession, req: DispatchRequest, onEvent: (e: AttemptEvent) => void): AttemptHandle | null {
    if (this.byId.has(req.requestId)) throw new Error('request id already in flight')
    const link = this.registry.handle(session.providerId, session.assignedId)
    if (link === undefined || !link.open) return null
    if (link.bufferedAmount > this.maxProviderBacklogBytes) return null
    if (!this.registry.acquire(session.providerId, session.assignedId)) return null
    const attempt: Attempt = { requestId: req.requestId, session, link, onEvent, lastSeq: -1, done: false }
    this.byId.set(req.requestId, attempt)
    let mine = this.bySession.get(session)
    if (mine === undefined) this.bySession.set(session, (mine = new InFlightTable()))
    mine.set(req.requestId, attempt)
    link.send(req.frame)
    return {
      session,
      cancel: (reason) => {
        if (attempt.done) return
        this.finish(attempt)
        if (link.open) link.send(encode(cancelRequest(attempt.requestId, reason)))
      },
    }
  }

  /** A chunk from `session`. Returns false when it breaks the seq order: a protocol violation. */
  onChunk(session: ProviderSession, chunk: ResponseChunkMessage): boolean {
    const a = this.byId.get(chunk.request_id)
    if (a === undefined || a.session !== session) return true
    if (chunk.seq <= a.lastSeq) return false
    a.lastSeq = chunk.seq
    this.emit(a, { kind: 'chunk', data: chunk.data })
    return true
  }

  /**
   * An end may carry the answer's last piece (FEATURE_END_DATA): it is passed on as the chunk it
   * stands for, then the end without it, so that what follows (the exchange, a remote node) sees
   * the two-frame form. The chunk can end the attempt (a held answer over its limit).
   */
  onEnd(session: ProviderSession, end: ResponseEndMessage): void {
    const a = this.byId.get(end.request_id)
    if (a === undefined || a.session !== session) return
    if (end.data !== undefined) {
      a.lastSeq++
      this.emit(a, { kind: 'chunk', data: end.data })
      if (a.done) return
      const { data: _, ...rest } = end
      end = rest
    }
    this.finish(a)
    this.emit(a, { kind: 'end', end })
  }

  /**
   * Resolves once nothing is in flight on `session` (or, for null, anywhere): for drains. Already
   * idle resolves at once.
   */
  whenIdle(session: ProviderSession | null): Promise<void> {
    if (((session === null ? this.byId : this.bySession.get(session))?.size ?? 0) === 0) return Promise.resolve()
    return new Promise((resolve) => {
      const list = this.idleWaiters.get(session) ?? []
      list.push(resolve)
      this.idleWaiters.set(session, list)
    })
  }

  /** The session's socket closed: every request still on it is lost. */
  onSessionClosed(session: ProviderSession): DisconnectPhase {
    const mine = this.bySession.get(session)
    if (mine === undefined) return 'idle'
    let phase: DisconnectPhase = 'idle'
    for (const a of mine.values()) {
      // A 'lost' listener may have finished another attempt of this session already.
      if (a.done) continue
      phase = a.lastSeq >= 0 ? 'mid_response' : phase === 'mid_response' ? phase : 'before_first_chunk'
      this.finish(a)
      this.emit(a, { kind: 'lost' })
    }
    return phase
  }

  /**
   * A throwing listener must not leave the other attempts on a closing socket holding their
   * slots, nor escape into the socket's event emitter and crash the process.
   */
  private emit(a: Attempt, e: AttemptEvent): void {
    try {
      a.onEvent(e)
    } catch (err) {
      this.log.error({ err, request_id: a.requestId, provider_id: a.session.providerId }, 'request handler failed')
    }
  }

  private finish(a: Attempt): void {
    a.done = true
    this.byId.delete(a.requestId)
    const mine = this.bySession.get(a.session)
    if (mine?.delete(a.requestId) === true && mine.size === 0) this.wake(a.session)
    if (this.byId.size === 0) this.wake(null)
    this.registry.release(a.session)
  }

  private wake(key: ProviderSession | null): void {
    const list = this.idleWaiters.get(key)
    if (list === undefined) return
    this.idleWaiters.delete(key)
    for (const resolve of list) queueMicrotask(resolve)
  }
}
