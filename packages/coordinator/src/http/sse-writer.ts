import type { ServerResponse } from 'node:http'
import type { AppContext } from '../app-context.js'
import { toPublicError, type CoordinatorError } from '../errors.js'
import { CHUNK_OVERHEAD_BYTES, type Exchange } from '../routing/exchange.js'
import { ResponseWriter } from './response-writer.js'

const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
  'x-accel-buffering': 'no',
}

/**
 * A stream, each chunk written the moment it arrives. The headers go out with the first chunk
 * the buyer can take, so that a failure before it still answers with a real status.
 *
 * A slow reader fails; the provider is never paused for it, because its socket multiplexes every
 * request that provider is serving. The backlog check is here, the one place that sees what the
 * buyer left unread (res.writableLength): onChunk refuses a chunk past maxBuyerBacklogBytes or
 * the process-wide budget, the exchange cancels the attempt with `buyer_too_slow`, and then
 * onWithdraw('buyer_too_slow') here destroys the socket.
 */
export class SseWriter extends ResponseWriter {
  private providerId = ''
  /** The 200 is out: from here a failure can only be an SSE error event. */
  private started = false
  /** Writes made since res.write first asked us to wait: each costs its overhead until the drain. */
  private queuedWrites = 0
  private endsWithBlankLine = true
  private readonly onDrain = (): void => {
    this.queuedWrites = 0
    this.reservation.resize(0)
  }

  constructor(ctx: AppContext, res: ServerResponse, requestId: string, exchange: Pick<Exchange, 'cancel'>) {
    super(ctx, res, requestId, exchange)
    res.on('drain', this.onDrain)
  }

  onCommit(providerId: string): void {
    this.providerId = providerId
  }

  onChunk(data: string): boolean {
    // Counted with this chunk included, before writing it: the backlog never passes the limit.
    const backlog = this.res.writableLength + Buffer.byteLength(data) + (this.queuedWrites + 1) * CHUNK_OVERHEAD_BYTES
    if (backlog > this.ctx.config.limits.maxBuyerBacklogBytes || !this.reservation.resize(backlog)) return false
    if (!this.started) {
      this.res.writeHead(200, { ...SSE_HEADERS, 'x-pool-provider': this.providerId, 'x-request-id': this.requestId })
      this.started = true
    }
    if (!this.res.write(data) || this.queuedWrites > 0) this.queuedWrites++
    this.endsWithBlankLine = data.endsWith('\n\n')
    return true
  }

  onComplete(): void {
    this.res.end()
    this.finish()
  }

  /** Before the first chunk, a status and envelope; after it, an SSE error event and [DONE]. */
  onFail(error: CoordinatorError, providerId: string | null): void {
    if (this.started) {
      // A provider's last chunk may have ended mid-event: the error must parse as its own event.
      if (!this.endsWithBlankLine) this.res.write('\n\n')
      this.res.write(`data: ${JSON.stringify(toPublicError(error).body)}\n\n`)
      this.res.end('data: [DONE]\n\n')
    } else {
      this.sendError(error, providerId)
    }
    this.finish()
  }

  protected override finish(): void {
    this.res.off('drain', this.onDrain)
    super.finish()
  }
}
