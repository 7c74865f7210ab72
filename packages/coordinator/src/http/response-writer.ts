import type { ServerResponse } from 'node:http'
import type { Usage } from '@poolcoord/protocol'
import type { AppContext } from '../app-context.js'
import { toPublicError, type CoordinatorError } from '../errors.js'
import type { Exchange, ExchangeSink, WithdrawStatus } from '../routing/exchange.js'
import type { Reservation } from '../routing/byte-budget.js'
import { sendError } from './respond.js'
import { watchUnsent } from './watch-unsent.js'

/**
 * What the JSON and SSE writers share: the buyer's close cancels the exchange, an error before
 * the first byte gets its HTTP status, and the response's memory stays reserved in ctx.buffers
 * until its last bytes are sent, past the exchange's end.
 */
export abstract class ResponseWriter implements ExchangeSink {
  /** What this response holds in our send buffer: a stream's backlog, then the unsent tail. */
  protected readonly reservation: Reservation
  private readonly onClose = (): void => this.exchange.cancel()

  constructor(
    protected readonly ctx: AppContext,
    protected readonly res: ServerResponse,
    protected readonly requestId: string,
    private readonly exchange: Pick<Exchange, 'cancel'>,
  ) {
    this.reservation = ctx.buffers.reservation()
    res.on('close', this.onClose)
  }

  abstract onCommit(providerId: string): void
  abstract onChunk(data: string): boolean
  abstract onComplete(body: string | null, usage: Usage | null): void
  abstract onFail(error: CoordinatorError, providerId: string | null): void

  onWithdraw(status: WithdrawStatus): void {
    // The exchange has already cancelled the attempt; the buyer's socket goes after it.
    if (status === 'buyer_too_slow') this.res.destroy()
    this.finish()
  }

  /** The error envelope with its status, naming the last provider tried; Retry-After on every 503. */
  protected sendError(err: CoordinatorError, providerId: string | null): void {
    const headers: Record<string, string> = { 'x-request-id': this.requestId }
    if (providerId !== null) headers['x-pool-provider'] = providerId
    if (toPublicError(err).status === 503) headers['retry-after'] = '1'
    sendError(this.res, err, headers)
  }

  /** After the exchange's last event: the response is written, or the buyer is gone. */
  protected finish(): void {
    this.res.off('close', this.onClose)
    if (this.res.writableFinished || this.res.destroyed) this.reservation.release()
    else {
      const { ctx, requestId } = this
      const onStall = (unsent: number): void => {
        const fields = { event: 'request.write_stall', request_id: requestId, unsent_bytes: unsent }
        ctx.log.warn(fields, 'buyer stopped reading; connection closed')
      }
      watchUnsent(this.res, this.reservation, ctx.config.limits.writeStallTimeoutMs, onStall)
    }
  }
}
