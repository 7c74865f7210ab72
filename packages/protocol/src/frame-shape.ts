/**
 * A cheap look at a JSON text's shape before JSON.parse: its nesting depth and how many
 * structural tokens it has. JSON.parse's cost grows with both, not with the bytes alone: a 1 MiB
 * frame of nested arrays blocks the event loop for hundreds of milliseconds, a 1 MiB string for
 * about one. One pass over the bytes, strings skipped (escapes included), so the check itself
 * costs about what reading the frame does. Pure.
 */
export type FrameShape = 'ok' | 'depth' | 'tokens'

const QUOTE = 0x22
const BACKSLASH = 0x5c
const OPEN_OBJECT = 0x7b
const OPEN_ARRAY = 0x5b
const CLOSE_OBJECT = 0x7d
const CLOSE_ARRAY = 0x5d
const COMMA = 0x2c
const COLON = 0x3a

/**
 * `maxDepth`: nested objects and arrays; `maxTokens`: commas, colons and openings together, which
 * bounds the values a parse must build. Malformed JSON is left to JSON.parse.
 */
export function frameShape(bytes: Uint8Array, maxDepth: number, maxTokens: number): FrameShape {
  let depth = 0
  let tokens = 0
  let inString = false
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]!
    if (inString) {
      if (c === BACKSLASH) i++
      else if (c === QUOTE) inString = false
      continue
    }
    switch (c) {
      case QUOTE:
        inString = true
        break
      case OPEN_OBJECT:
      case OPEN_ARRAY:
        if (++depth > maxDepth) return 'depth'
        if (++tokens > maxTokens) return 'tokens'
        break
      case CLOSE_OBJECT:
      case CLOSE_ARRAY:
        depth--
        break
      case COMMA:
      case COLON:
        if (++tokens > maxTokens) return 'tokens'
        break
    }
  }
  return 'ok'
}
