import type { CoordinatorError } from '../errors.js'
import { ResponseWriter } from './response-writer.js'

/**
 * A non-streaming answer as one application/json body. The exchange holds the answer until the
 * provider's end, so nothing is written before it and every failure keeps its HTTP status.
 */
export class JsonWriter extends ResponseWriter {
  private providerId = ''

  onCommit(providerId: string): void {
    this.providerId = providerId
  }

  /** Never called: the exchange hands a held answer over whole, in onComplete. */
  onChunk(): boolean {
    return true
  }

  onComplete(body: string | null): void {
    const text = body ?? ''
    // Name-value pairs in a flat array: Node writes them as they are, with no header object to build.
    this.res.writeHead(200, [
      'content-type',
      'application/json; charset=utf-8',
      'content-length',
      String(Buffer.byteLength(text)),
      'x-pool-provider',
      this.providerId,
      'x-request-id',
      this.requestId,
    ])
    this.res.end(text)
    this.finish()
  }

  onFail(error: CoordinatorError, providerId: string | null): void {
    this.sendError(error, providerId)
    this.finish()
  }
}
