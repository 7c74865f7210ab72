import type { CancelReason, Usage } from '@poolcoord/protocol'
import type { Clock } from '../clock.js'
import type { Limits } from '../config.js'
import { ModelNotFoundError, NoProviderAvailableError, ProviderTimeoutError, toPublicError, type CoordinatorError } from '../errors.js'
import type { Logger } from '../logger.js'
import type { Metrics, RequestStatus } from '../metrics.js'
import type { EjectionCap } from '../pool/ejection-cap.js'
import type { ProviderSession } from '../pool/provider-session.js'
import type { Registry } from '../pool/registry.js'
import type { AttemptEvent, AttemptHandle, AttemptTarget } from './attempt.js'
import { decide, failureOfEnd, movesHealth, type AttemptFailure, type Failure, type RequestState } from './failure-policy.js'
import { selectProvider } from './select-provider.js'

export interface ExchangeRequest {
  requestId: string
  model: string
  stream: boolean
  /** The inference_request frame, already built and size-checked. */
  frame: string
  pin: string | null
  /** Clock ms of the request's arrival: its deadline and first_chunk_ms count from here. */
  arrivedAt: number
}

export interface ExchangeResult {
  status: RequestStatus
  /** The provider that served, or the last one tried. */
  providerId: string | null
  attempts: number
  failovers: AttemptFailure[]
  /** From the request's arrival to the first chunk of the attempt that served it. */
  firstChunkMs: number | null
  usage: Usage | null
}

/** Ends with nothing more for the buyer: it left, or it could not take a chunk. */
export type WithdrawStatus = 'buyer_disconnected' | 'buyer_too_slow'

/**
 * How the buyer hears of an exchange: onCommit once the answer is one provider's (a stream's
 * first chunk, a held answer's end), a stream's chunks, then exactly one of onComplete, onFail
 * and onWithdraw, after which the exchange says nothing more.
 */
export interface ExchangeSink {
  /** No failover from here on. */
  onCommit(providerId: string): void
  /**
   * A non-empty chunk of a stream. False when the buyer cannot take it: the exchange then
   * withdraws the attempt with `buyer_too_slow` and ends with onWithdraw('buyer_too_slow').
   * The backlog check lives in the writer, which alone sees what the buyer left unread; stopping
   * the provider is the exchange's, which alone holds the attempt.
   */
  onChunk(data: string): boolean
  /** A held answer's body, or null for a stream, whose chunks have all been passed on. */
  onComplete(body: string | null, usage: Usage | null): void
  /** `providerId`: the last provider tried, or null if none was chosen. */
  onFail(error: CoordinatorError, providerId: string | null): void
  onWithdraw(status: WithdrawStatus): void
}

/**
 * A reservation in the process-wide buffer budget (routing/byte-budget.ts), as much of one as a held
 * answer needs: routing never imports http/.
 */
export interface HeldReservation {
  /** False, changing nothing, if the budget cannot grow by that much. */
  resize(n: number): boolean
  release(): void
}

/** What an exchange needs of the coordinator; AppContext has it all. */
export interface ExchangeContext {
  readonly config: { readonly limits: Pick<Limits, 'requestTimeoutMs' | 'firstChunkTimeoutMs' | 'maxResponseBytes'> }
  /** The pool selection reads: the Registry, or in cluster mode the whole cluster's (AppContext.pool). */
  readonly pool: Pick<Registry<unknown>, 'sessionList' | 'recordOutcome' | 'markBusy' | 'routingVersion'>
  /** Which cooling providers the ejection cap releases, per model (pool/ejection-cap.ts). */
  readonly ejection: Pick<EjectionCap, 'released'>
  readonly clock: Clock
  readonly buffers: { reservation(): HeldReservation }
  readonly metrics: Pick<Metrics, 'failover'>
  readonly log: Pick<Logger, 'debug'>
}

/**
 * What a buffered chunk costs beyond its bytes (object headers, list nodes). Charged per chunk,
 * so that a provider cannot make a byte limit cost ten times its size in tiny chunks.
 */
export const CHUNK_OVERHEAD_BYTES = 256

/**
 * One buyer request against the pool (specs/buyer-api.md §3, §4): selection, dispatch,
 * failover, the request and first-chunk deadlines, the buyer's cancel, and the held answer of a
 * non-streaming request. What each failure does is routing/failure-policy.ts's decision; how
 * the answer reaches the buyer is the sink's (http/json-writer.ts, http/sse-writer.ts).
 *
 * A non-streaming answer is held until its end, up to maxResponseBytes, so that a provider
 * failure still gets its HTTP status; it also means a non-streaming request can fail over at any
 * point before its end, since nothing reached the buyer. What is held is reserved in
 * ctx.buffers, one budget for the process, with a per-chunk overhead.
 */
export class Exchange {
  /** 'routing' until the answer is one provider's; 'ended' once the sink had its last event. */
  private phase: 'routing' | 'committed' | 'ended' = 'routing'
  /** Set by run(). */
  private sink!: ExchangeSink
  private resolve: (r: ExchangeResult) => void = () => {}
  /** provider_ids tried: a failover never returns to them. */
  private readonly tried = new Set<string>()
  private readonly failovers: AttemptFailure[] = []
  /** The provider of the running attempt, or of the last one. */
  private current: ProviderSession | null = null
  private attempt: AttemptHandle | null = null
  private firstChunkAt: number | null = null
  private usage: Usage | null = null
  /** A non-streaming answer so far, and its cost in the buffer budget. */
  private held: string[] = []
  private heldBytes = 0
  private readonly heldBudget: HeldReservation
  private deadline: NodeJS.Timeout | undefined
  private firstChunkTimer: NodeJS.Timeout | undefined

  constructor(
    private readonly ctx: ExchangeContext,
    private readonly target: AttemptTarget,
    private readonly request: ExchangeRequest,
  ) {
    this.heldBudget = ctx.buffers.reservation()
  }

  /** Runs the exchange to its end; resolves once the sink has had its last event. */
  run(sink: ExchangeSink): Promise<ExchangeResult> {
    this.sink = sink
    return new Promise((resolve) => {
      this.resolve = resolve
      const remaining = this.ctx.config.limits.requestTimeoutMs - (this.ctx.clock.now() - this.request.arrivedAt)
      // A request that spent its whole deadline queued (a slow upload, a pipeline) is not dispatched.
      if (remaining <= 0) return this.fail(new ProviderTimeoutError())
      this.deadline = setTimeout(this.onDeadline, remaining)
      this.tryNext(null)
    })
  }

  /** The buyer left: the provider is told, and the sink hears onWithdraw. */
  cancel(): void {
    if (this.phase === 'ended') return
    this.withdraw('buyer_disconnected')
    this.end('buyer_disconnected', (sink) => sink.onWithdraw('buyer_disconnected'))
  }

  /** `fallback`: the answer if nobody is left to try, for a failover (the first failure's). */
  private tryNext(fallback: CoordinatorError | null): void {
    const r = this.request
    const pool = this.ctx.pool.sessionList()
    const now = this.ctx.clock.now()
    const sel = selectProvider(pool, { model: r.model, pin: r.pin, exclude: this.tried }, Math.random, now, this.ctx.ejection.released(this.ctx.pool, now))
    if (!sel.ok) {
      if (fallback !== null) return this.fail(fallback)
      return this.fail(sel.reason === 'model_not_found' ? new ModelNotFoundError() : new NoProviderAvailableError(r.pin !== null))
    }
    const session = sel.session
    this.current = session
    this.tried.add(session.providerId)
    this.held = []
    this.heldBytes = 0
    this.heldBudget.resize(0)
    this.firstChunkAt = null
    this.attempt = this.target.dispatch(session, { requestId: r.requestId, frame: r.frame }, this.onEvent)
    if (this.attempt === null) return this.onFailure('unreachable')
    // Only streams have a first-chunk deadline: a non-streaming answer may legitimately come
    // in one piece at the end of a long generation, bounded by the request deadline.
    if (r.stream) this.firstChunkTimer = setTimeout(this.onFirstChunkTimeout, this.ctx.config.limits.firstChunkTimeoutMs)
  }

  private readonly onEvent = (e: AttemptEvent): void => {
    if (this.phase === 'ended') return
    if (e.kind === 'chunk') return this.onChunk(e.data)
    clearTimeout(this.firstChunkTimer)
    this.attempt = null
    if (e.kind === 'lost') return this.onFailure('disconnect')
    if (e.kind === 'refused') return this.onFailure('refused')
    const failure = failureOfEnd(e.end.status)
    if (failure !== null) {
      if (e.end.error !== undefined) {
        const fields = { request_id: this.request.requestId, provider_id: this.current?.providerId, provider_error: e.end.error.code }
        this.ctx.log.debug(fields, 'provider ended with an error')
      }
      return this.onFailure(failure)
    }
    if (this.firstChunkAt === null) return this.onFailure('provider_internal') // "complete" with no answer
    this.usage = e.end.usage ?? null
    this.complete()
  }

  private onChunk(data: string): void {
    // An empty chunk is not an answer: it neither stops the first-chunk clock nor costs memory.
    if (data.length === 0) return
    if (this.firstChunkAt === null) {
      clearTimeout(this.firstChunkTimer)
      this.firstChunkTimer = undefined
      this.firstChunkAt = this.ctx.clock.now()
    }
    if (!this.request.stream) return this.hold(data)
    if (this.phase === 'routing') {
      this.phase = 'committed'
      this.sink.onCommit(this.current!.providerId)
    }
    if (!this.sink.onChunk(data)) {
      this.withdraw('buyer_too_slow')
      this.end('buyer_too_slow', (sink) => sink.onWithdraw('buyer_too_slow'))
    }
  }

  private hold(data: string): void {
    this.heldBytes += Buffer.byteLength(data) + CHUNK_OVERHEAD_BYTES
    if (this.heldBytes > this.ctx.config.limits.maxResponseBytes) return this.onFailure('response_too_large')
    if (!this.heldBudget.resize(this.heldBytes)) return this.onFailure('coordinator_busy')
    this.held.push(data)
  }

  private readonly onDeadline = (): void => this.onFailure('request_timeout')
  private readonly onFirstChunkTimeout = (): void => this.onFailure('first_chunk_timeout')

  /**
   * Applies the policy's decision. Timers fire only with an attempt running: every path that
   * leaves none (a failed dispatch, an end, a failover finding nobody) moves on or ends at once.
   */
  private onFailure(failure: Failure): void {
    clearTimeout(this.firstChunkTimer)
    const d = decide(failure, this.state())
    if (d.cancel !== null) this.withdraw(d.cancel)
    const current = this.current
    if (d.fault !== null && current !== null) this.ctx.pool.recordOutcome(current.providerId, d.fault, this.ctx.clock.now())
    if (d.markBusy && current !== null) this.ctx.pool.markBusy(current.providerId, current.assignedId)
    if (d.action === 'failover') {
      this.failovers.push(d.reason)
      this.ctx.metrics.failover(d.reason)
      return this.tryNext(d.error)
    }
    this.fail(d.error)
  }

  private state(): RequestState {
    return { committed: this.phase === 'committed', pinned: this.request.pin !== null, attempts: this.tried.size }
  }

  private complete(): void {
    const providerId = this.current!.providerId
    if (movesHealth(this.state())) this.ctx.pool.recordOutcome(providerId, null, this.ctx.clock.now())
    const body = this.request.stream ? null : this.held.join('')
    // A held answer is the provider's only now: until its end it could still fail over.
    if (this.phase === 'routing') {
      this.phase = 'committed'
      this.sink.onCommit(providerId)
    }
    const usage = this.usage
    this.end('complete', (sink) => sink.onComplete(body, usage))
  }

  private fail(err: CoordinatorError): void {
    if (this.phase === 'ended') return
    const providerId = this.current?.providerId ?? null
    this.end(toPublicError(err).body.error.code, (sink) => sink.onFail(err, providerId))
  }

  private withdraw(reason: CancelReason): void {
    this.attempt?.cancel(reason)
    this.attempt = null
  }

  /** Every path ends here, once: timers cleared and the held answer released on each. */
  private end(status: RequestStatus, last: (sink: ExchangeSink) => void): void {
    this.phase = 'ended'
    clearTimeout(this.deadline)
    clearTimeout(this.firstChunkTimer)
    this.held = []
    this.heldBudget.release()
    last(this.sink)
    this.resolve({
      status,
      providerId: this.current?.providerId ?? null,
      attempts: this.tried.size,
      failovers: this.failovers,
      firstChunkMs: this.firstChunkAt === null ? null : this.firstChunkAt - this.request.arrivedAt,
      usage: this.usage,
    })
  }
}
