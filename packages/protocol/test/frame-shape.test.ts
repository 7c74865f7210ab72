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
