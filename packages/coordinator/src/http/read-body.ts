import { isUtf8 } from 'node:buffer'
import type { IncomingMessage } from 'node:http'
import { InvalidJsonError, RequestTooLargeError } from '../errors.js'

/** The client went away while sending its body: there is nobody left to answer. */
export class BodyAbortedError extends Error {
  override name = 'BodyAbortedError'
}

/** A body as read: its text, and the bytes it was decoded from (for checks that scan bytes). */
export interface RawBody {
  text: string
  bytes: Buffer
}

/**
 * Reads a request body of at most `limit` bytes. A declared Content-Length over the limit is
 * refused before a byte is read; a chunked body is refused as soon as it passes the limit. The
 * caller answers 413 with `Connection: close`, so the rest is never read.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<RawBody> {
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
      const bytes = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, size)
      // Strict: invalid UTF-8 is refused rather than silently replaced, so that what the
      // provider gets is byte for byte what the buyer sent. isUtf8 is one native pass; once it
      // holds, toString cannot replace anything (and, like the decoder before it, keeps a BOM).
      if (!isUtf8(bytes)) return reject(new InvalidJsonError())
      resolve({ text: bytes.toString('utf8'), bytes })
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
