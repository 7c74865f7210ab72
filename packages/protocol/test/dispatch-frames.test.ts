import t from 'tap'
import { cancelRequest, encode, inferenceRequest, parseResponseChunk, parseResponseEnd } from '../src/index.js'

t.test('builders', async (t) => {
  t.same(JSON.parse(encode(inferenceRequest('req-1', true, '{"model":"m"}'))), {
    type: 'inference_request',
    request_id: 'req-1',
    stream: true,
    body: '{"model":"m"}',
  })
  t.same(JSON.parse(encode(cancelRequest('req-1', 'buyer_disconnected'))), { type: 'cancel_request', request_id: 'req-1', reason: 'buyer_disconnected' })
})

t.test('inference_response_chunk bounds', async (t) => {
  t.same(parseResponseChunk({ request_id: 'req-1', seq: 0, data: 'x' }), {
    ok: true,
    value: { type: 'inference_response_chunk', request_id: 'req-1', seq: 0, data: 'x' },
  })
  t.ok(parseResponseChunk({ request_id: 'req-1', seq: 5, data: '' }).ok, 'empty data is allowed')
  const bad: Array<[Record<string, unknown>, string]> = [
    [{ seq: 0, data: 'x' }, 'invalid_frame: request_id'],
    [{ request_id: '', seq: 0, data: 'x' }, 'invalid_frame: request_id'],
    [{ request_id: 'r'.repeat(65), seq: 0, data: 'x' }, 'invalid_frame: request_id'],
    [{ request_id: 7, seq: 0, data: 'x' }, 'invalid_frame: request_id'],
    [{ request_id: 'r', seq: -1, data: 'x' }, 'invalid_frame: seq'],
    [{ request_id: 'r', seq: 1.5, data: 'x' }, 'invalid_frame: seq'],
    [{ request_id: 'r', seq: '1', data: 'x' }, 'invalid_frame: seq'],
    [{ request_id: 'r', seq: 2 ** 31, data: 'x' }, 'invalid_frame: seq'],
    [{ request_id: 'r', seq: 0 }, 'invalid_frame: data'],
    [{ request_id: 'r', seq: 0, data: { a: 1 } }, 'invalid_frame: data'],
  ]
  for (const [msg, reason] of bad) {
    const r = parseResponseChunk(msg)
    t.same(r.ok ? null : r.close, { code: 4003, reason }, JSON.stringify(msg).slice(0, 60))
  }
})

t.test('inference_response_end: status is a closed set; usage and error are sanitised', async (t) => {
  t.same(parseResponseEnd({ request_id: 'r', status: 'complete' }), {
    ok: true,
    value: { type: 'inference_response_end', request_id: 'r', status: 'complete' },
  })
  const full = parseResponseEnd({ request_id: 'r', status: 'complete', usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7, extra: 'x' } })
  t.same(full.ok && full.value.usage, { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 })
  const derived = parseResponseEnd({ request_id: 'r', status: 'complete', usage: { prompt_tokens: 3, completion_tokens: 4 } })
  t.same(derived.ok && derived.value.usage, { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 })
  for (const usage of [{ prompt_tokens: -1, completion_tokens: 1 }, { prompt_tokens: '3', completion_tokens: 1 }, [1, 2], 'lots']) {
    const r = parseResponseEnd({ request_id: 'r', status: 'complete', usage })
    t.equal(r.ok && r.value.usage, undefined, `malformed usage ${JSON.stringify(usage)} is dropped`)
  }
  const err = parseResponseEnd({ request_id: 'r', status: 'error_internal', error: { code: 'cuda_oom', message: 'long text' } })
  t.equal(err.ok && err.value.error?.code, 'cuda_oom')
  const hostile = parseResponseEnd({ request_id: 'r', status: 'error_internal', error: { code: 'a\nb {"level":60}' } })
  t.equal(hostile.ok && hostile.value.error, undefined, 'a code that is not a plain token is dropped')
  for (const status of ['done', 'COMPLETE', 1, undefined]) {
    const r = parseResponseEnd({ request_id: 'r', status })
    t.same(r.ok ? null : r.close, { code: 4003, reason: 'invalid_frame: status' }, String(status))
  }
  // end_data (§4.3): a last piece only on a complete end, and only a string.
  const last = parseResponseEnd({ request_id: 'r', status: 'complete', data: '{"x":1}' })
  t.equal(last.ok && last.value.data, '{"x":1}')
  const empty = parseResponseEnd({ request_id: 'r', status: 'complete', data: '' })
  t.equal(empty.ok && empty.value.data, '', 'an empty last piece is kept (and, like an empty chunk, is not an answer)')
  for (const [status, data] of [
    ['error_internal', 'x'],
    ['cancelled', ''],
    ['complete', 42],
    ['complete', null],
  ] as const) {
    const r = parseResponseEnd({ request_id: 'r', status, data })
    t.same(r.ok ? null : r.close, { code: 4003, reason: 'invalid_frame: data' }, `${status} with ${JSON.stringify(data)}`)
  }
})
