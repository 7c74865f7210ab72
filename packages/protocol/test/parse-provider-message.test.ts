import t from 'tap'
import {
  decodeJson,
  modelSet,
  parseHeartbeat as parseHeartbeatMessage,
  parseHello,
  type HeartbeatMessage,
  type HelloMessage,
  type Json,
  type Parsed,
} from '../src/index.js'

/**
 * Hellos are compared in wire shape; the model set (model_id, then supported_models, without
 * duplicates) is what the pool keeps, so it is checked through modelSet. Heartbeats are
 * compared through a flat view with the merged model set.
 */
const modelsOf = (m: HelloMessage): string[] => modelSet(m.model_id, m.supported_models)
type Heartbeat = { status: string; slotsFree: number; slotsTotal: number; models?: string[] }
const heartbeatView = (m: HeartbeatMessage): Heartbeat => {
  const hb: Heartbeat = { status: m.status, slotsFree: m.slots_free, slotsTotal: m.slots_total }
  if (m.model_id !== undefined || m.supported_models !== undefined) hb.models = modelSet(m.model_id, m.supported_models)
  return hb
}
function parseHeartbeat(msg: Json): Parsed<Heartbeat> {
  const r = parseHeartbeatMessage(msg)
  return r.ok ? { ok: true, value: heartbeatView(r.value) } : r
}

const validHello = (): Record<string, unknown> => ({
  type: 'hello',
  version: 1,
  provider_id: 'mac-1',
  hostname: 'mac.local',
  model_id: 'llama-3-8b',
  binary_version: '1.2.3',
  max_concurrency: 4,
  max_context_tokens: 8192,
  supported_models: ['qwen', 'llama-3-8b', 'mistral', 'qwen'],
  throughput_tps_estimate: 42.5,
})

/** A hello with some fields replaced; a value of DELETE removes the field. */
const DELETE = Symbol('delete')
function hello(over: Record<string, unknown>): Record<string, unknown> {
  const msg = validHello()
  for (const [k, v] of Object.entries(over)) {
    if (v === DELETE) delete msg[k]
    else msg[k] = v
  }
  return msg
}

t.test('decodeJson', async (t) => {
  const cases: { name: string; data: Buffer | string; expected: Record<string, unknown> | null }[] = [
    { name: 'object string', data: '{"type":"hello","n":1}', expected: { type: 'hello', n: 1 } },
    { name: 'object buffer', data: Buffer.from('{"a":[1,2]}', 'utf8'), expected: { a: [1, 2] } },
    { name: 'utf8 buffer', data: Buffer.from('{"h":"héllo"}', 'utf8'), expected: { h: 'héllo' } },
    { name: 'array', data: '[1,2]', expected: null },
    { name: 'null', data: 'null', expected: null },
    { name: 'number', data: '42', expected: null },
    { name: 'string', data: '"hello"', expected: null },
    { name: 'boolean', data: 'true', expected: null },
    { name: 'invalid json', data: '{"type":', expected: null },
    { name: 'empty', data: '', expected: null },
    { name: 'empty buffer', data: Buffer.alloc(0), expected: null },
  ]
  for (const c of cases) t.strictSame(decodeJson(c.data), c.expected, c.name)
})

t.test('a valid hello parses and merges models', async (t) => {
  const r = parseHello(validHello())
  // validHello() holds exactly the known fields, so the parsed message equals it.
  const expected = validHello() as unknown as HelloMessage
  t.strictSame(r, { ok: true, value: expected })
  t.strictSame(r.ok && modelsOf(r.value), ['llama-3-8b', 'qwen', 'mistral'])
})

t.test('valid hello variants', async (t) => {
  const cases: { name: string; msg: Record<string, unknown>; check: Partial<HelloMessage> & { models?: string[] } }[] = [
    { name: 'no supported_models', msg: hello({ supported_models: DELETE }), check: { models: ['llama-3-8b'] } },
    { name: 'empty supported_models', msg: hello({ supported_models: [] }), check: { models: ['llama-3-8b'] } },
    { name: 'no throughput', msg: hello({ throughput_tps_estimate: DELETE }), check: { throughput_tps_estimate: undefined } },
    { name: 'null throughput', msg: hello({ throughput_tps_estimate: null }), check: { throughput_tps_estimate: undefined } },
    { name: 'zero throughput', msg: hello({ throughput_tps_estimate: 0 }), check: { throughput_tps_estimate: 0 } },
    { name: 'unknown extra fields ignored', msg: hello({ future_field: { x: 1 }, gpu: 'm3' }), check: { provider_id: 'mac-1' } },
    { name: 'provider_id of 64 chars', msg: hello({ provider_id: 'a'.repeat(64) }), check: { provider_id: 'a'.repeat(64) } },
    { name: 'provider_id charset', msg: hello({ provider_id: 'A-z_0.9' }), check: { provider_id: 'A-z_0.9' } },
    { name: 'hostname of 253 chars', msg: hello({ hostname: 'h'.repeat(253) }), check: { hostname: 'h'.repeat(253) } },
    { name: 'max_concurrency 1', msg: hello({ max_concurrency: 1 }), check: { max_concurrency: 1 } },
    { name: 'max_concurrency 256', msg: hello({ max_concurrency: 256 }), check: { max_concurrency: 256 } },
    { name: 'max_context_tokens 1', msg: hello({ max_context_tokens: 1 }), check: { max_context_tokens: 1 } },
    {
      name: '64 supported models that include model_id',
      msg: hello({ supported_models: ['llama-3-8b', ...Array.from({ length: 63 }, (_, i) => `m${i}`)] }),
      check: { models: ['llama-3-8b', ...Array.from({ length: 63 }, (_, i) => `m${i}`)] },
    },
  ]
  for (const c of cases) {
    const r = parseHello(c.msg)
    t.equal(r.ok, true, `${c.name}: ok`)
    const { models, ...fields } = c.check
    if (r.ok) t.match(r.value, fields, `${c.name}: value`)
    if (r.ok && 'throughput_tps_estimate' in fields && fields.throughput_tps_estimate === undefined) {
      t.notOk('throughput_tps_estimate' in r.value, `${c.name}: no throughput key`)
    }
    if (r.ok && models) t.strictSame(modelsOf(r.value), models, `${c.name}: models exactly`)
  }
})

t.test('invalid hellos close with the exact code and reason', async (t) => {
  const notHello = { code: 4000, reason: 'unrecognized_first_frame' }
  const unsupported = { code: 4004, reason: 'unsupported_version' }
  const bad = (field: string) => ({ code: 4001, reason: `invalid_hello: ${field}` })
  const cases: { name: string; msg: Record<string, unknown> | null; close: { code: number; reason: string } }[] = [
    { name: 'null (non-object frame)', msg: null, close: notHello },
    { name: 'decoded array', msg: decodeJson('[{"type":"hello"}]'), close: notHello },
    { name: 'wrong type', msg: hello({ type: 'heartbeat' }), close: notHello },
    { name: 'missing type', msg: hello({ type: DELETE }), close: notHello },
    { name: 'empty object', msg: {}, close: notHello },
    { name: 'version 2', msg: hello({ version: 2 }), close: unsupported },
    { name: 'version 0', msg: hello({ version: 0 }), close: unsupported },
    { name: 'version as a string', msg: hello({ version: '1' }), close: bad('version') },
    { name: 'version missing', msg: hello({ version: DELETE }), close: bad('version') },
    { name: 'provider_id with a space', msg: hello({ provider_id: 'mac 1' }), close: bad('provider_id') },
    { name: 'provider_id of 65 chars', msg: hello({ provider_id: 'a'.repeat(65) }), close: bad('provider_id') },
    { name: 'provider_id empty', msg: hello({ provider_id: '' }), close: bad('provider_id') },
    { name: 'provider_id missing', msg: hello({ provider_id: DELETE }), close: bad('provider_id') },
    { name: 'provider_id a number', msg: hello({ provider_id: 12 }), close: bad('provider_id') },
    { name: 'provider_id with a slash', msg: hello({ provider_id: 'a/b' }), close: bad('provider_id') },
    { name: 'provider_id with a trailing newline', msg: hello({ provider_id: 'mac-1\n' }), close: bad('provider_id') },
    { name: 'hostname of 254 chars', msg: hello({ hostname: 'h'.repeat(254) }), close: bad('hostname') },
    { name: 'hostname with a control char', msg: hello({ hostname: 'mac\u0001local' }), close: bad('hostname') },
    { name: 'hostname with a newline', msg: hello({ hostname: 'mac\nlocal' }), close: bad('hostname') },
    { name: 'hostname with DEL', msg: hello({ hostname: 'mac\u007f' }), close: bad('hostname') },
    { name: 'hostname empty', msg: hello({ hostname: '' }), close: bad('hostname') },
    { name: 'hostname missing', msg: hello({ hostname: DELETE }), close: bad('hostname') },
    { name: 'model_id empty', msg: hello({ model_id: '' }), close: bad('model_id') },
    { name: 'model_id of 257 chars', msg: hello({ model_id: 'm'.repeat(257) }), close: bad('model_id') },
    { name: 'binary_version of 65 chars', msg: hello({ binary_version: 'v'.repeat(65) }), close: bad('binary_version') },
    { name: 'binary_version missing', msg: hello({ binary_version: DELETE }), close: bad('binary_version') },
    { name: 'max_concurrency 0', msg: hello({ max_concurrency: 0 }), close: bad('max_concurrency') },
    { name: 'max_concurrency 257', msg: hello({ max_concurrency: 257 }), close: bad('max_concurrency') },
    { name: 'max_concurrency 1.5', msg: hello({ max_concurrency: 1.5 }), close: bad('max_concurrency') },
    { name: "max_concurrency '4'", msg: hello({ max_concurrency: '4' }), close: bad('max_concurrency') },
    { name: 'max_concurrency missing', msg: hello({ max_concurrency: DELETE }), close: bad('max_concurrency') },
    { name: 'max_context_tokens 0', msg: hello({ max_context_tokens: 0 }), close: bad('max_context_tokens') },
    { name: 'max_context_tokens above 1e8', msg: hello({ max_context_tokens: 100_000_001 }), close: bad('max_context_tokens') },
    { name: 'supported_models not an array', msg: hello({ supported_models: 'qwen,llama' }), close: bad('supported_models') },
    { name: 'supported_models null', msg: hello({ supported_models: null }), close: bad('supported_models') },
    {
      name: 'supported_models with 65 entries',
      msg: hello({ supported_models: Array.from({ length: 65 }, (_, i) => `m${i}`) }),
      close: bad('supported_models'),
    },
    {
      name: '64 supported models plus a distinct model_id is 65 models',
      msg: hello({ supported_models: Array.from({ length: 64 }, (_, i) => `m${i}`) }),
      close: bad('supported_models'),
    },
    { name: 'supported_models entry of 257 chars', msg: hello({ supported_models: ['m'.repeat(257)] }), close: bad('supported_models') },
    { name: 'supported_models non-string entry', msg: hello({ supported_models: [7] }), close: bad('supported_models') },
    { name: 'supported_models empty entry', msg: hello({ supported_models: [''] }), close: bad('supported_models') },
    { name: 'throughput negative', msg: hello({ throughput_tps_estimate: -1 }), close: bad('throughput_tps_estimate') },
    { name: "throughput 'NaN' string", msg: hello({ throughput_tps_estimate: 'NaN' }), close: bad('throughput_tps_estimate') },
    { name: "throughput '12' string", msg: hello({ throughput_tps_estimate: '12' }), close: bad('throughput_tps_estimate') },
    { name: 'throughput NaN number', msg: hello({ throughput_tps_estimate: Number.NaN }), close: bad('throughput_tps_estimate') },
    { name: 'throughput Infinity', msg: hello({ throughput_tps_estimate: Infinity }), close: bad('throughput_tps_estimate') },
    { name: 'throughput above 1e6', msg: hello({ throughput_tps_estimate: 1_000_001 }), close: bad('throughput_tps_estimate') },
  ]
  for (const c of cases) t.strictSame(parseHello(c.msg), { ok: false, close: c.close }, c.name)
})

const validHb = (): Record<string, unknown> => ({ type: 'heartbeat', status: 'ready', slots_free: 2, slots_total: 4 })
function heartbeat(over: Record<string, unknown>): Record<string, unknown> {
  const msg = validHb()
  for (const [k, v] of Object.entries(over)) {
    if (v === DELETE) delete msg[k]
    else msg[k] = v
  }
  return msg
}

t.test('valid heartbeats', async (t) => {
  const cases: { name: string; msg: Record<string, unknown>; value: Heartbeat }[] = [
    { name: 'plain', msg: validHb(), value: { status: 'ready', slotsFree: 2, slotsTotal: 4 } },
    { name: 'busy, all slots used', msg: heartbeat({ status: 'busy', slots_free: 0 }), value: { status: 'busy', slotsFree: 0, slotsTotal: 4 } },
    { name: 'free equals total', msg: heartbeat({ slots_free: 4 }), value: { status: 'ready', slotsFree: 4, slotsTotal: 4 } },
    {
      name: 'zero slots',
      msg: heartbeat({ status: 'unavailable', slots_free: 0, slots_total: 0 }),
      value: { status: 'unavailable', slotsFree: 0, slotsTotal: 0 },
    },
    { name: '1024 slots', msg: heartbeat({ slots_free: 1024, slots_total: 1024 }), value: { status: 'ready', slotsFree: 1024, slotsTotal: 1024 } },
    { name: 'draining', msg: heartbeat({ status: 'draining' }), value: { status: 'draining', slotsFree: 2, slotsTotal: 4 } },
    { name: 'degraded', msg: heartbeat({ status: 'degraded' }), value: { status: 'degraded', slotsFree: 2, slotsTotal: 4 } },
    { name: 'unknown fields ignored', msg: heartbeat({ gpu_temp: 71 }), value: { status: 'ready', slotsFree: 2, slotsTotal: 4 } },
    { name: 'model_id update', msg: heartbeat({ model_id: 'qwen' }), value: { status: 'ready', slotsFree: 2, slotsTotal: 4, models: ['qwen'] } },
    {
      name: 'model_id and supported_models merged, deduplicated',
      msg: heartbeat({ model_id: 'qwen', supported_models: ['llama', 'qwen', 'llama'] }),
      value: { status: 'ready', slotsFree: 2, slotsTotal: 4, models: ['qwen', 'llama'] },
    },
    {
      name: 'supported_models alone',
      msg: heartbeat({ supported_models: ['a', 'b'] }),
      value: { status: 'ready', slotsFree: 2, slotsTotal: 4, models: ['a', 'b'] },
    },
  ]
  for (const c of cases) {
    const r = parseHeartbeat(c.msg)
    t.strictSame(r, { ok: true, value: c.value }, c.name)
    if (r.ok && c.value.models === undefined) t.notOk('models' in r.value, `${c.name}: no models key`)
  }
})

t.test('invalid heartbeats close 4003 with the field', async (t) => {
  const bad = (field: string) => ({ code: 4003, reason: `invalid_frame: ${field}` })
  const cases: { name: string; msg: Record<string, unknown>; close: { code: number; reason: string } }[] = [
    { name: 'slots_free > slots_total', msg: heartbeat({ slots_free: 5, slots_total: 4 }), close: bad('slots_free') },
    { name: 'slots_free negative', msg: heartbeat({ slots_free: -1 }), close: bad('slots_free') },
    { name: 'slots_free string', msg: heartbeat({ slots_free: '2' }), close: bad('slots_free') },
    { name: 'slots_free missing', msg: heartbeat({ slots_free: DELETE }), close: bad('slots_free') },
    { name: 'bad status', msg: heartbeat({ status: 'idle' }), close: bad('status') },
    { name: 'status wrong case', msg: heartbeat({ status: 'READY' }), close: bad('status') },
    { name: 'status missing', msg: heartbeat({ status: DELETE }), close: bad('status') },
    { name: 'status a number', msg: heartbeat({ status: 1 }), close: bad('status') },
    { name: 'slots_total 1025', msg: heartbeat({ slots_total: 1025, slots_free: 0 }), close: bad('slots_total') },
    { name: 'slots_total negative', msg: heartbeat({ slots_total: -1 }), close: bad('slots_total') },
    { name: 'slots_total fractional', msg: heartbeat({ slots_total: 4.5 }), close: bad('slots_total') },
    { name: 'slots_total missing', msg: heartbeat({ slots_total: DELETE }), close: bad('slots_total') },
    { name: 'model_id empty', msg: heartbeat({ model_id: '' }), close: bad('model_id') },
    { name: 'model_id a number', msg: heartbeat({ model_id: 3 }), close: bad('model_id') },
    { name: 'supported_models not an array', msg: heartbeat({ supported_models: 'a' }), close: bad('supported_models') },
    { name: 'supported_models empty, no model_id', msg: heartbeat({ supported_models: [] }), close: bad('supported_models') },
    {
      name: 'supported_models with 65 entries',
      msg: heartbeat({ supported_models: Array.from({ length: 65 }, (_, i) => `m${i}`) }),
      close: bad('supported_models'),
    },
  ]
  for (const c of cases) t.strictSame(parseHeartbeat(c.msg), { ok: false, close: c.close }, c.name)
})
