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
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]!
    switch (c) {
      case QUOTE:
        // Most of a frame's bytes are inside strings (an answer's data): jump from quote to
        // quote with indexOf (a native memchr), and look back only at the backslashes before
        // each one found. A malformed, unterminated string ends the scan: JSON.parse refuses it.
        i = stringEnd(bytes, i + 1)
        if (i < 0) return 'ok'
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

/** Bytes of a string scanned one at a time before the scan jumps with indexOf. */
const SHORT_STRING = 512

/** The index of the quote that closes a string starting at `from`, or -1 if none does. */
function stringEnd(bytes: Uint8Array, from: number): number {
  // Keys and short values: a plain loop is cheaper than a native call per quote.
  const short = Math.min(bytes.length, from + SHORT_STRING)
  let i = from
  for (; i < short; i++) {
    const c = bytes[i]
    if (c === QUOTE) return i
    if (c === BACKSLASH) i++
  }
  if (i >= bytes.length) return -1
  // A long string (an answer's data): from here `i` starts clean (no escape pending), so the
  // backslashes before a quote are counted back to it at most.
  const start = i
  let q = bytes.indexOf(QUOTE, start)
  while (q >= 0) {
    let backslashes = 0
    while (q - 1 - backslashes >= start && bytes[q - 1 - backslashes] === BACKSLASH) backslashes++
    // An even run of backslashes escapes itself; the quote then closes the string.
    if (backslashes % 2 === 0) return q
    q = bytes.indexOf(QUOTE, q + 1)
  }
  return -1
}
