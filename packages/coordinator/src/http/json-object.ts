import { frameShape } from '@poolcoord/protocol'
import { InvalidJsonError } from '../errors.js'

/**
 * How deep a request body may nest. JSON.parse of 1 MiB of nested arrays blocks the event loop
 * for hundreds of milliseconds; real bodies (messages, tool schemas) stay far below this.
 */
export const MAX_BODY_DEPTH = 64

/**
 * Parses a request body that must be one JSON object; anything else (or deeper than
 * MAX_BODY_DEPTH) is `invalid_json`. `bytes`: the text's UTF-8 bytes when the caller has them
 * (a body just read), so that the depth scan does not encode the text again.
 */
export function parseJsonObject(text: string, bytes: Uint8Array = Buffer.from(text)): Record<string, unknown> {
  if (frameShape(bytes, MAX_BODY_DEPTH, Number.POSITIVE_INFINITY) !== 'ok') throw new InvalidJsonError()
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch {
    throw new InvalidJsonError()
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new InvalidJsonError()
  return v as Record<string, unknown>
}
