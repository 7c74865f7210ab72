import type { IncomingMessage } from 'node:http'
import { RequestTooLargeError } from '../errors.js'

/** The client went away while sending its body: there is nobody left to answer. */
export class BodyAbortedError extends Error {
  override name = 'BodyAbortedError'
}

/**
 * Reads a request body of at most `limit` bytes. A declared Content-Length over the limit is
 * refused before a byte is read; a chunked body is refused as soon as it passes the limit. The
 * caller answers 413 with `Connection: close`, so the rest is never read.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<string> {
  const declared = req.headers['content-length']
  if (declared !== undefined && Number(declared) > limit) return Promise.reject(new RequestTooLargeError(limit))
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = []
    let size = 0
    const onData = (chunk: Buffer): void => {
      size += chunk.length
      if (size > limit) {
        cleanup()
        req.pause()
        reject(new RequestTooLargeError(limit))
        return
      }
      parts.push(chunk)
    }
    const onEnd = (): void => {
      cleanup()
      resolve(Buffer.concat(parts, size).toString('utf8'))
    }
    const onError = (): void => {
      cleanup()
      reject(new BodyAbortedError('request body aborted'))
    }
    const cleanup = (): void => {
      req.off('data', onData)
      req.off('end', onEnd)
      req.off('error', onError)
      req.off('aborted', onError)
    }
    req.on('data', onData)
    req.on('end', onEnd)
    req.on('error', onError)
    req.on('aborted', onError)
  })
}
