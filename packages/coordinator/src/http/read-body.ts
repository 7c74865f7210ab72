import type { IncomingMessage } from 'node:http'
import { InvalidJsonError, RequestTooLargeError } from '../errors.js'

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
  if (declared !== undefined && Number(declared) > limit) return Promise.reject(tooLarge(limit))
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = []
    let size = 0
    const onData = (chunk: Buffer): void => {
      size += chunk.length
      if (size > limit) {
        cleanup()
        req.pause()
        reject(tooLarge(limit))
        return
      }
      parts.push(chunk)
    }
    const onEnd = (): void => {
      cleanup()
      try {
        // Strict: invalid UTF-8 is refused rather than silently replaced, so that what the
        // provider gets is byte for byte what the buyer sent.
        resolve(new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(Buffer.concat(parts, size)))
      } catch {
        reject(new InvalidJsonError())
      }
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

function tooLarge(limit: number): RequestTooLargeError {
  return new RequestTooLargeError(`request body exceeds ${limit} bytes`)
}
