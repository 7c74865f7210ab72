import t from 'tap'
import { MAX_FRAME_DEPTH, MAX_FRAME_TOKENS, encode, frameShape, heartbeat, responseChunk, responseEnd } from '../src/index.js'

const b = (s: string) => Buffer.from(s)

t.test('every valid provider frame is far inside the bounds', async (t) => {
  const models = Array.from({ length: 64 }, (_, i) => `model-${i}`)
  for (const msg of [
    heartbeat('ready', 4, 4, { model_id: 'm', supported_models: models }),
    responseChunk('r', 1, '{"choices":[{"delta":{"content":"[[[[{{{{ , : \\" ]]]]"}}]}'.repeat(2000)),
    responseEnd('r', 'complete', { usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 }, errorCode: 'x' }),
  ]) {
    t.equal(frameShape(b(encode(msg)), MAX_FRAME_DEPTH, MAX_FRAME_TOKENS), 'ok', msg.type)
  }
})

t.test('depth and token counts: strings (with escapes) are skipped, structure outside them counted', async (t) => {
  t.equal(frameShape(b('{"a":[[[1]]]}'), 4, 100), 'ok')
  t.equal(frameShape(b('{"a":[[[[1]]]]}'), 4, 100), 'depth')
  t.equal(frameShape(b('{"a":"[[[[[[[[\\"[[[["}'), 1, 100), 'ok', 'brackets inside a string, after an escaped quote')
  t.equal(frameShape(b(`{"a":[${'1,'.repeat(200)}1]}`), 8, 100), 'tokens')
  t.equal(frameShape(b(`{"type":"x","a":${'['.repeat(500_000)}`), MAX_FRAME_DEPTH, MAX_FRAME_TOKENS), 'depth', 'the abusive frame of the attack run')
  t.equal(frameShape(b('not json {'), 8, 100), 'ok', 'malformed JSON is left to JSON.parse')
})

/** The first, byte-at-a-time scan: the jumping one must agree with it on every input. */
function referenceShape(bytes: Uint8Array, maxDepth: number, maxTokens: number): string {
  let depth = 0
  let tokens = 0
  let inString = false
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]!
    if (inString) {
      if (c === 0x5c) i++
      else if (c === 0x22) inString = false
      continue
    }
    if (c === 0x22) inString = true
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > maxDepth) return 'depth'
      if (++tokens > maxTokens) return 'tokens'
    } else if (c === 0x7d || c === 0x5d) depth--
    else if (c === 0x2c || c === 0x3a) {
      if (++tokens > maxTokens) return 'tokens'
    }
  }
  return 'ok'
}

t.test('the scan that jumps between quotes agrees with a byte-at-a-time scan (seeded random frames)', async (t) => {
  // Runs of backslashes before quotes are the case the jump must get right: \" escapes, \\" does not;
  // the filler makes strings longer than the plain loop's stretch, so both halves of the scan run.
  const alphabet = ['"', '\\', '\\\\', '\\"', '[', ']', '{', '}', ',', ':', 'a', ' ', '0', ...Array.from({ length: 60 }, () => 'abcdefgh')]
  let seed = 0x2545f491
  const next = (): number => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) / 2 ** 24
  let disagreements = 0
  for (let n = 0; n < 20_000; n++) {
    const parts: string[] = []
    const len = 1 + Math.floor(next() * 400)
    for (let i = 0; i < len; i++) parts.push(alphabet[Math.floor(next() * alphabet.length)]!)
    const bytes = b(parts.join(''))
    const maxDepth = 1 + Math.floor(next() * 4)
    const maxTokens = 1 + Math.floor(next() * 12)
    if (frameShape(bytes, maxDepth, maxTokens) !== referenceShape(bytes, maxDepth, maxTokens)) disagreements++
  }
  t.equal(disagreements, 0)
})
