import t from 'tap'
import {
  FEATURE_END_DATA,
  Close,
  cancelRequest,
  decodeJson,
  drain,
  encode,
  heartbeat,
  hello,
  helloAck,
  inferenceRequest,
  parseCoordinatorMessage,
  parseHello,
  parseHelloAck,
  parseProviderMessage,
  responseChunk,
  responseEnd,
  withField,
  type CoordinatorMessage,
  type ProviderMessage,
} from '../src/index.js'

const TOKEN = 'ab'.repeat(32)

/** Every provider → coordinator message the constructors can build, in its variants. */
const providerMessages: Array<[string, ProviderMessage]> = [
  ['hello, minimal', hello({ provider_id: 'p-1', hostname: 'h', model_id: 'm', binary_version: '1', max_concurrency: 1, max_context_tokens: 1 })],
  [
    'hello, every field',
    hello({
      provider_id: 'p.2_x',
      hostname: 'gpu.local',
      model_id: 'llama',
      binary_version: 'agent/0.1.0',
      max_concurrency: 256,
      max_context_tokens: 100_000_000,
      supported_models: ['qwen', 'llama'],
      throughput_tps_estimate: 12.5,
    }),
  ],
  ['heartbeat', heartbeat('ready', 4, 2)],
  ['heartbeat with models', heartbeat('draining', 4, 0, { model_id: 'm', supported_models: ['a', 'b'] })],
  ['chunk', responseChunk('req-1', 0, 'data: {"x":1}\n\n')],
  ['chunk, empty data, large seq', responseChunk('req-1', 2 ** 31 - 1, '')],
  ['end, complete', responseEnd('req-1', 'complete')],
  ['end with usage', responseEnd('req-1', 'complete', { usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 } })],
  ['end with an error code', responseEnd('req-1', 'error_internal', { errorCode: 'backend_http_500' })],
  [
    'end with the last piece (end_data)',
    responseEnd('req-1', 'complete', { usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 }, data: '{"a":"\\"b"}' }),
  ],
]

/** Every coordinator → provider message. */
const coordinatorMessages: Array<[string, CoordinatorMessage]> = [
  ['hello_ack, no token', helloAck({ assigned_id: '6f1c0a8e-4e3a-4a55-9d39-8a9a3c0f5b11', heartbeat_interval_s: 30, auth_state: 'bearer_validated' })],
  ['hello_ack with a minted token', helloAck({ assigned_id: 'a', heartbeat_interval_s: 1, auth_state: 'self_minted', assigned_provider_token: TOKEN })],
  ['hello_ack, duplicate', helloAck({ assigned_id: 'a', heartbeat_interval_s: 3600, auth_state: 'bearerless_duplicate' })],
  [
    'hello_ack with features',
    helloAck({ assigned_id: 'a', heartbeat_interval_s: 30, auth_state: 'bearer_validated', features: [FEATURE_END_DATA, 'some_later_feature'] }),
  ],
  ['inference_request', inferenceRequest('req-1', false, '{"model":"m","messages":[]}')],
  ['inference_request, stream', inferenceRequest('req-2', true, '{"stream":true}')],
  ['cancel_request', cancelRequest('req-1', 'buyer_disconnected')],
  ['cancel_request, timeout', cancelRequest('req-1', 'timeout')],
  ['drain', drain()],
]

t.test('provider messages survive encode and the coordinator parser unchanged', async (t) => {
  for (const [name, msg] of providerMessages) {
    const decoded = decodeJson(encode(msg))
    const parsed = msg.type === 'hello' ? parseHello(decoded) : parseProviderMessage(decoded ?? {})
    t.strictSame(parsed, { ok: true, value: msg }, name)
  }
})

t.test('coordinator messages survive encode and the provider parser unchanged', async (t) => {
  for (const [name, msg] of coordinatorMessages) {
    t.strictSame(parseCoordinatorMessage(decodeJson(encode(msg)) ?? {}), { ok: true, value: msg }, name)
  }
})

t.test('encode is JSON of exactly the known fields, and the parsers drop unknown ones', async (t) => {
  t.equal(encode(drain()), '{"type":"drain"}')
  t.equal(encode(responseEnd('r', 'complete', { usage: null, errorCode: null })), '{"type":"inference_response_end","request_id":"r","status":"complete"}')
  const withExtra = { ...heartbeat('ready', 2, 1), gpu_temp: 71 }
  t.strictSame(parseProviderMessage(withExtra), { ok: true, value: heartbeat('ready', 2, 1) })
  const ackExtra = { ...helloAck({ assigned_id: 'a', heartbeat_interval_s: 30, auth_state: 'bearer_validated' }), future: true }
  t.strictSame(parseHelloAck(ackExtra), { ok: true, value: helloAck({ assigned_id: 'a', heartbeat_interval_s: 30, auth_state: 'bearer_validated' }) })
})

t.test('unknown message types parse to null in both directions (ignored, so the protocol can grow)', async (t) => {
  t.strictSame(parseProviderMessage({ type: 'telemetry', x: 1 }), { ok: true, value: null })
  t.strictSame(parseCoordinatorMessage({ type: 'reconfigure' }), { ok: true, value: null })
})

t.test('the provider parser refuses malformed coordinator frames with the field named', async (t) => {
  const ack = (over: Record<string, unknown>) => ({ ...helloAck({ assigned_id: 'a', heartbeat_interval_s: 30, auth_state: 'self_minted' }), ...over })
  const cases: Array<[string, Record<string, unknown>, string]> = [
    ['newer coordinator version', ack({ coordinator_version: 2 }), 'coordinator_version'],
    ['empty assigned_id', ack({ assigned_id: '' }), 'assigned_id'],
    ['interval 0', ack({ heartbeat_interval_s: 0 }), 'heartbeat_interval_s'],
    ['interval fractional', ack({ heartbeat_interval_s: 1.5 }), 'heartbeat_interval_s'],
    ['unknown auth_state', ack({ auth_state: 'root' }), 'auth_state'],
    ['token in the wrong form', ack({ assigned_provider_token: 'AB'.repeat(32) }), 'assigned_provider_token'],
    ['token too short', ack({ assigned_provider_token: 'ab' }), 'assigned_provider_token'],
    ['request without body', { type: 'inference_request', request_id: 'r', stream: false }, 'body'],
    ['request with a string stream', { type: 'inference_request', request_id: 'r', stream: 'yes', body: '{}' }, 'stream'],
    ['request id too long', { type: 'inference_request', request_id: 'r'.repeat(65), stream: false, body: '{}' }, 'request_id'],
    ['cancel without id', { type: 'cancel_request', reason: 'timeout' }, 'request_id'],
    ['features not a list', ack({ features: 'end_data' }), 'features'],
    ['a feature name out of its charset', ack({ features: ['End-Data'] }), 'features'],
    ['too many features', ack({ features: Array.from({ length: 17 }, (_, i) => `f${i}`) }), 'features'],
  ]
  for (const [name, frame, field] of cases) {
    t.strictSame(parseCoordinatorMessage(frame), { ok: false, close: withField(Close.invalidFrame, field) }, name)
  }
  t.strictSame(
    parseCoordinatorMessage({ type: 'cancel_request', request_id: 'r', reason: 'new_reason' }),
    {
      ok: true,
      value: cancelRequest('r', 'timeout'),
    },
    'an unknown cancel reason still cancels',
  )
})

t.test('every close code in the table is distinct except the documented 4429 reasons, and reasons carry no input', async (t) => {
  const specs = Object.values(Close)
  const byCode = new Map<number, string[]>()
  for (const s of specs) byCode.set(s.code, [...(byCode.get(s.code) ?? []), s.reason])
  for (const [code, reasons] of byCode) {
    if (code === 4429) t.strictSame(reasons.sort(), ['admission_busy', 'pool_full', 'prefix_full'])
    else t.equal(reasons.length, 1, `code ${code} has one reason`)
  }
  for (const s of specs) t.match(s.reason, /^[a-z_]+$/, s.reason)
})
