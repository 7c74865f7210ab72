import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AppContext } from '../app-context.js'
import { CoordinatorBusyError, CoordinatorError, RequestTooLargeError, toPublicError } from '../errors.js'
import { parseChatRequest, parsePin } from './chat-request.js'
import { BodyAbortedError, readBody } from './read-body.js'
import { Exchange, type ExchangeResult } from '../routing/exchange.js'
import { encode, inferenceRequest } from '@poolcoord/protocol'
import { JsonWriter } from './json-writer.js'
import { sendError } from './respond.js'
import { SseWriter } from './sse-writer.js'

/**
 * POST /v1/chat/completions: read and check the body, run it against the pool (an Exchange,
 * written to the buyer by a JsonWriter or an SseWriter), then record one metric sample and one
 * log line for the request, whatever its outcome.
 */
export async function chatCompletions(ctx: AppContext, req: IncomingMessage, res: ServerResponse, queued: WeakMap<object, number>): Promise<void> {
  const arrivedAt = ctx.clock.now()
  // Every answer carries it (buyer-api.md §2): the writers put it in their headers.
  const requestId = `req-${randomUUID()}`
  let model: string | null = null
  let stream = false
  let result: ExchangeResult
  // The body and its frame stay in memory for the whole request, queued or running: they count
  // against the same process-wide budget as held answers.
  const bodyBytes = ctx.buffers.reservation()
  try {
    const pin = parsePin(req.headers['x-pool-provider'])
    const raw = await readBody(req, ctx.config.limits.maxBodyBytes)
    const chat = parseChatRequest(raw.text, raw.bytes)
    model = chat.model
    stream = chat.stream
    const frame = encode(inferenceRequest(requestId, chat.stream, chat.body))
    // JSON-encoding the body can double it; providers are promised frames no larger than this.
    if (Buffer.byteLength(frame) > ctx.config.limits.maxDispatchFrameBytes) {
      throw new RequestTooLargeError(`encoded request exceeds the ${ctx.config.limits.maxDispatchFrameBytes}-byte provider frame limit`)
    }
    if (!bodyBytes.resize(2 * Buffer.byteLength(frame))) throw new CoordinatorBusyError()
    // Not pipelined (the usual case): the socket is ours already, with no promise to wait on.
    if (res.socket === null && !(await ownsSocket(req, res, queued))) throw new BodyAbortedError('buyer left while pipelined')
    const exchange = new Exchange(ctx, ctx.target, { requestId, model: chat.model, stream: chat.stream, frame, pin, arrivedAt })
    const Writer = chat.stream ? SseWriter : JsonWriter
    result = await exchange.run(new Writer(ctx, res, requestId, exchange))
  } catch (err) {
    // Only request errors reach here: the exchange answers every routing outcome itself.
    const none = { providerId: null, attempts: 0, failovers: [], firstChunkMs: null, usage: null }
    if (err instanceof BodyAbortedError) {
      result = { status: 'buyer_disconnected', ...none }
    } else {
      sendError(res, err, err instanceof RequestTooLargeError ? { 'x-request-id': requestId, connection: 'close' } : { 'x-request-id': requestId })
      result = { status: toPublicError(err).body.error.code, ...none }
      if (toPublicError(err).status >= 500 && !(err instanceof CoordinatorError)) ctx.log.error({ err, request_id: requestId }, 'request failed')
    }
  } finally {
    bodyBytes.release()
  }
  const endedAt = ctx.clock.now()
  const durationMs = endedAt - arrivedAt
  ctx.metrics.request({
    status: result.status,
    stream,
    durationS: durationMs / 1000,
    firstChunkS: result.firstChunkMs === null ? null : result.firstChunkMs / 1000,
  })
  const failed = result.status !== 'complete' && result.status !== 'buyer_disconnected'
  ctx.history.record(endedAt, failed)
  // The line is built only when its level is on (the bench and quiet deployments log at warn).
  if (!ctx.log.isLevelEnabled(failed ? 'warn' : 'info')) return
  const line = {
    event: 'request.finished',
    request_id: requestId,
    provider_id: result.providerId,
    model,
    stream,
    status: result.status,
    attempts: result.attempts,
    failovers: result.failovers,
    first_chunk_ms: result.firstChunkMs,
    duration_ms: Math.round(durationMs),
    usage: result.usage,
  }
  if (failed) ctx.log.warn(line, 'request failed')
  else ctx.log.info(line, 'request finished')
}

/** Pipelined requests a connection may have waiting behind the one being answered. */
const MAX_QUEUED_PER_CONNECTION = 4

/**
 * HTTP/1.1 pipelining: a response queued behind another gets its socket only when that one is
 * done, and until then it never hears of the socket closing. Dispatching it early would hold a
 * provider slot for a buyer who may already be gone, so it waits for its turn, or for the close.
 */
function ownsSocket(req: IncomingMessage, res: ServerResponse, queued: WeakMap<object, number>): Promise<boolean> {
  if (res.socket !== null) return Promise.resolve(true)
  const socket = req.socket
  if (socket.destroyed) return Promise.resolve(false)
  // Node reads pipelined requests without limit: a connection may queue only a few.
  const waiting = queued.get(socket) ?? 0
  if (waiting >= MAX_QUEUED_PER_CONNECTION) return Promise.reject(new CoordinatorBusyError())
  queued.set(socket, waiting + 1)
  return new Promise((resolve) => {
    // One listener per queued response, removed when it gets its turn: raise the cap to match.
    socket.setMaxListeners(socket.getMaxListeners() + 1)
    const settle = (owned: boolean) => (): void => {
      res.off('socket', onSocket)
      socket.off('close', onClose)
      socket.setMaxListeners(Math.max(10, socket.getMaxListeners() - 1))
      queued.set(socket, (queued.get(socket) ?? 1) - 1)
      resolve(owned)
    }
    const onSocket = settle(true)
    const onClose = settle(false)
    res.once('socket', onSocket)
    socket.once('close', onClose)
  })
}
