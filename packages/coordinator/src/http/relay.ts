import type { ServerResponse } from 'node:http'
import type { AppContext } from '../context.js'
import {
  CoordinatorBusyError,
  ModelNotFoundError,
  NoProviderAvailableError,
  ProviderError,
  ProviderTimeoutError,
  toPublicError,
  type CoordinatorError,
} from '../errors.js'
import type { RequestStatus } from '../metrics.js'
import type { ProviderSession } from '../pool/provider-session.js'
import type { CancelReason, Usage } from '@poolcoord/protocol'
import type { AttemptEvent, AttemptHandle } from '../routing/dispatcher.js'
import { errorForFailure, failureOfEnd, mayFailover, type AttemptFailure } from '../routing/failure-policy.js'
import { selectProvider } from '../routing/select-provider.js'
import { sendError } from './respond.js'
import { watchUnsent } from './watch-unsent.js'

export interface RelayRequest {
  requestId: string
  model: string
  stream: boolean
  /** The inference_request frame, already built and size-checked. */
  frame: string
  pin: string | null
}

export interface RelayResult {
  status: RequestStatus
  /** The provider that served, or the last one tried. */
  providerId: string | null
  attempts: number
  failovers: AttemptFailure[]
  /** From the request's arrival to the first chunk of the attempt that served it. */
  firstChunkMs: number | null
  usage: Usage | null
}

const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
  'x-accel-buffering': 'no',
}

/**
 * What a buffered chunk costs beyond its bytes (object headers, list nodes). Charged per chunk,
 * so that a provider cannot make a byte limit cost ten times its size in tiny chunks.
 */
const CHUNK_OVERHEAD_BYTES = 256

/** Failures that say something about the provider, and so start its cooldown. */
const PROVIDER_FAULTS: ReadonlySet<AttemptFailure> = new Set([
  'disconnect',
  'unreachable',
  'queue_full',
  'model_not_loaded',
  'provider_internal',
  'provider_cancelled',
  'first_chunk_timeout',
])

/**
 * Runs one buyer request against the pool and writes the answer to `res` (specs/buyer-api.md).
 *
 * Streaming chunks are written as they arrive. A non-streaming answer is held until its end, up
 * to maxResponseBytes, so that a provider failure still gets its HTTP status; it also means a
 * non-streaming request can fail over at any point before its end, since nothing reached the
 * buyer. Failover, timeouts and errors follow routing/failure-policy.ts.
 *
 * Memory: everything held for the buyer (a non-streaming answer, a streaming backlog) is
 * reserved in ctx.buffers, one budget for the process, and counted with a per-chunk overhead.
 * A buyer that leaves more than maxBuyerBacklogBytes unread fails with `buyer_too_slow`. We
 * do not pause the provider's socket instead, because it multiplexes every request that
 * provider is serving.
 */
export function relay(ctx: AppContext, res: ServerResponse, r: RelayRequest, arrivedAt: number): Promise<RelayResult> {
  const { limits } = ctx.config
  return new Promise((resolve) => {
    const tried = new Set<string>()
    const failovers: AttemptFailure[] = []
    const buffered = ctx.buffers.reservation()
    let attempt: AttemptHandle | null = null
    let current: ProviderSession | null = null
    let committed = false
    let finished = false
    let firstChunkAt: number | null = null
    let usage: Usage | null = null
    let held: string[] = []
    let heldBytes = 0
    let queuedWrites = 0
    let endsWithBlankLine = true
    let firstChunkTimer: NodeJS.Timeout | undefined
    const remaining = limits.requestTimeoutMs - (ctx.clock.now() - arrivedAt)
    const deadline = setTimeout(() => {
      // A provider that holds a request to the deadline is at fault as much as one that fails it.
      if (attempt !== null) recordOutcome(false)
      withdraw('timeout')
      fail(new ProviderTimeoutError())
    }, Math.max(0, remaining))

    res.on('close', onBuyerClose)
    res.on('drain', onDrain)
    // A request that spent its whole deadline queued (a slow upload, a pipeline) is not dispatched.
    if (remaining <= 0) fail(new ProviderTimeoutError())
    else tryNext(null)

    function tryNext(previous: AttemptFailure | null): void {
      const sel = selectProvider(ctx.registry.sessionList(), { model: r.model, pin: r.pin, exclude: tried }, Math.random, ctx.clock.now())
      if (!sel.ok) {
        if (previous !== null) return fail(errorForFailure(previous))
        return fail(sel.reason === 'model_not_found' ? new ModelNotFoundError() : new NoProviderAvailableError(r.pin !== null))
      }
      const session = sel.session
      current = session
      tried.add(session.providerId)
      held = []
      heldBytes = 0
      buffered.resize(0)
      firstChunkAt = null
      attempt = ctx.dispatcher.dispatch(session, { requestId: r.requestId, frame: r.frame }, onEvent)
      if (attempt === null) return onFailure('unreachable')
      // Only streams have a first-chunk deadline: a non-streaming answer may legitimately come
      // in one piece at the end of a long generation, bounded by the request deadline.
      if (r.stream) {
        firstChunkTimer = setTimeout(() => {
          withdraw('timeout')
          onFailure('first_chunk_timeout')
        }, limits.firstChunkTimeoutMs)
      }
    }

    function onEvent(e: AttemptEvent): void {
      if (finished) return
      if (e.kind === 'chunk') return onChunk(e.data)
      clearTimeout(firstChunkTimer)
      attempt = null
      if (e.kind === 'lost') return onFailure('disconnect')
      const failure = failureOfEnd(e.end.status)
      if (failure !== null) {
        if (e.end.error !== undefined) {
          ctx.log.debug({ request_id: r.requestId, provider_id: current?.providerId, provider_error: e.end.error.code }, 'provider ended with an error')
        }
        return onFailure(failure)
      }
      if (firstChunkAt === null) return onFailure('provider_internal') // "complete" with no answer
      usage = e.end.usage ?? null
      recordOutcome(true)
      complete()
    }

    function onChunk(data: string): void {
      // An empty chunk is not an answer: it neither stops the first-chunk clock nor costs memory.
      if (data.length === 0) return
      clearTimeout(firstChunkTimer)
      firstChunkAt ??= ctx.clock.now()
      if (!r.stream) {
        heldBytes += Buffer.byteLength(data) + CHUNK_OVERHEAD_BYTES
        if (heldBytes > limits.maxResponseBytes) {
          recordOutcome(false)
          withdraw('response_too_large')
          return fail(new ProviderError())
        }
        if (!buffered.resize(heldBytes)) {
          withdraw('coordinator_busy')
          return fail(new CoordinatorBusyError())
        }
        held.push(data)
        return
      }
      // Counted with this chunk included, before writing it: the backlog never passes the limit.
      const backlog = res.writableLength + Buffer.byteLength(data) + (queuedWrites + 1) * CHUNK_OVERHEAD_BYTES
      if (backlog > limits.maxBuyerBacklogBytes || !buffered.resize(backlog)) {
        withdraw('buyer_too_slow')
        res.destroy()
        return done('buyer_too_slow')
      }
      if (!committed) {
        res.writeHead(200, { ...SSE_HEADERS, 'x-pool-provider': current?.providerId as string })
        committed = true
      }
      if (!res.write(data) || queuedWrites > 0) queuedWrites++
      endsWithBlankLine = data.endsWith('\n\n')
    }

    function onDrain(): void {
      queuedWrites = 0
      if (!finished) buffered.resize(0)
    }

    function onFailure(failure: AttemptFailure): void {
      clearTimeout(firstChunkTimer)
      if (PROVIDER_FAULTS.has(failure)) recordOutcome(false)
      // The provider said it is full: send it nothing more until its next heartbeat.
      if (failure === 'queue_full' && current !== null) ctx.registry.markBusy(current.providerId, current.assignedId)
      if (mayFailover(failure, { committed, pinned: r.pin !== null, attempts: tried.size })) {
        failovers.push(failure)
        ctx.metrics.failover(failure)
        return tryNext(failure)
      }
      fail(errorForFailure(failure))
    }

    /** Pinned requests never move a provider's health: a buyer could aim them at an honest one. */
    function recordOutcome(ok: boolean): void {
      if (current !== null && r.pin === null) ctx.registry.recordOutcome(current.providerId, ok, ctx.clock.now())
    }

    function complete(): void {
      const providerId = current?.providerId as string
      if (r.stream) {
        res.end()
      } else {
        const text = held.join('')
        res.writeHead(200, {
          'content-type': 'application/json; charset=utf-8',
          'content-length': Buffer.byteLength(text),
          'x-pool-provider': providerId,
        })
        res.end(text)
      }
      done('complete')
    }

    /** Ends the request with an error: a status and envelope if nothing was sent, else an SSE error event. */
    function fail(err: CoordinatorError): void {
      if (finished) return
      const pub = toPublicError(err)
      if (committed) {
        if (!endsWithBlankLine) res.write('\n\n')
        res.write(`data: ${JSON.stringify(pub.body)}\n\n`)
        res.end('data: [DONE]\n\n')
      } else {
        const headers: Record<string, string> = {}
        if (current !== null) headers['x-pool-provider'] = current.providerId
        if (pub.status === 503) headers['retry-after'] = '1'
        sendError(res, err, headers)
      }
      done(pub.body.error.code)
    }

    function withdraw(reason: CancelReason): void {
      attempt?.cancel(reason)
      attempt = null
    }

    function onBuyerClose(): void {
      if (finished) return
      withdraw('buyer_disconnected')
      done('buyer_disconnected')
    }

    function done(status: RequestStatus): void {
      finished = true
      clearTimeout(deadline)
      clearTimeout(firstChunkTimer)
      res.off('close', onBuyerClose)
      res.off('drain', onDrain)
      held = []
      if (res.writableFinished || res.destroyed) buffered.release()
      else {
        watchUnsent(res, buffered, limits.writeStallTimeoutMs, (unsent) =>
          ctx.log.warn({ event: 'request.write_stall', request_id: r.requestId, unsent_bytes: unsent }, 'buyer stopped reading; connection closed'),
        )
      }
      resolve({
        status,
        providerId: current?.providerId ?? null,
        attempts: tried.size,
        failovers,
        firstChunkMs: firstChunkAt === null ? null : firstChunkAt - arrivedAt,
        usage,
      })
    }
  })
}
