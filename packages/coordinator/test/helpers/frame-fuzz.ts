/**
 * Provider frames for the frame fuzzer (test/integration/fuzz.test.ts), and what the coordinator
 * must do with each. Frames are valid ones with their fields damaged (structure-aware), the same
 * serialised and then damaged byte by byte, and random bytes. The verdicts come from the protocol
 * package's parsers, which are specs/protocol.md as code: the fuzzer checks that the coordinator
 * on the wire does what they say, for every frame, without crashing, hanging or leaking.
 */
import { isUtf8 } from 'node:buffer'
import {
  Close,
  END_STATUSES,
  IDENTITY_INTENTS,
  MAX_FRAME_DEPTH,
  MAX_FRAME_TOKENS,
  PROVIDER_STATUSES,
  decodeJson,
  frameShape,
  identityKeyFromSeed,
  parseAuthInit,
  parseAuthProof,
  parseHello,
  parseProviderMessage,
  withField,
  type AdmittedProviderMessage,
  type AuthInitMessage,
  type AuthProofMessage,
  type HelloMessage,
  type IdentityKeyPair,
} from '@poolcoord/protocol'
import { Raw, damage, jsonText, nested, oddNumber, oddString, oddValue, setField, type Rng } from './fuzz-rng.js'

export type FuzzFrame =
  /** Sent as a text frame, bytes as they are (they need not be UTF-8). */
  | { kind: 'text'; data: Buffer; label: string }
  | { kind: 'binary'; data: Buffer; label: string }
  /** A frame header that declares `size` bytes, followed by a few: refused on the header alone. */
  | { kind: 'declared'; size: number; label: string }

export interface FrameLimits {
  maxFrameBytes: number
  maxHelloBytes: number
}

/** What the coordinator must answer a frame with. A close names its reason, except for the WebSocket layer's own. */
export type Expected = { close: { code: number; reason: string | null } } | { accept: true }

/** The model ids fuzzed frames announce: none is served to the body fuzzer's buyers. */
export const FRAME_MODEL = 'fm-llama'

const text = (value: unknown, label: string): FuzzFrame => ({ kind: 'text', data: Buffer.from(jsonText(value)), label })

// ---- valid frames ----

function helloFields(rng: Rng): Record<string, unknown> {
  const id = `fz-p${rng.int(2000)}`
  const f: Record<string, unknown> = {
    provider_id: id,
    hostname: `${id}.local`,
    model_id: FRAME_MODEL,
    binary_version: '1.0.0',
    max_concurrency: rng.range(1, 256),
    max_context_tokens: rng.pick([1, 8192, 100_000_000]),
  }
  if (rng.chance(0.3)) f.supported_models = Array.from({ length: rng.range(0, 4) }, (_, i) => `fm-m${i}`)
  if (rng.chance(0.3)) f.throughput_tps_estimate = rng.pick([0, 12.5, 1e6])
  if (rng.chance(0.2)) f.tier = 'pro' // fields of the reference binaries that v1 ignores
  return f
}

/** Identity keys from the seed, so that the signatures a run makes are the same every time. */
export function fuzzKeys(rng: Rng, n: number): IdentityKeyPair[] {
  return Array.from({ length: n }, () => identityKeyFromSeed(rng.bytes(32).toString('base64url')))
}

function authInitFrame(rng: Rng, keys: IdentityKeyPair[], key: IdentityKeyPair): Record<string, unknown> {
  const intent = rng.chance(0.7) ? 'enroll' : rng.pick(IDENTITY_INTENTS)
  const f: Record<string, unknown> = { type: 'auth_init', version: 2, ...helloFields(rng), identity_key: key.publicKey, intent }
  if (intent === 'rotate') f.next_identity_key = (keys.find((k) => k !== key) ?? key).publicKey
  return f
}

function heartbeatFrame(rng: Rng): Record<string, unknown> {
  const total = rng.range(0, 8)
  const f: Record<string, unknown> = { type: 'heartbeat', status: rng.pick(PROVIDER_STATUSES), slots_total: total, slots_free: rng.range(0, total) }
  if (rng.chance(0.2)) f.model_id = FRAME_MODEL
  if (rng.chance(0.1)) f.supported_models = [`fm-m${rng.int(3)}`]
  return f
}

/** The ids a session's chunks and ends may name: its own live requests, and ids nobody dispatched. */
export interface RequestIds {
  /** Requests dispatched to this session, in the order they arrived (runtime values). */
  real: readonly string[]
  /** The last seq this session sent for a request, -1 before its first chunk. */
  lastSeq(id: string): number
}

function requestIdFor(rng: Rng, ids: RequestIds): { id: string; real: boolean } {
  if (ids.real.length > 0 && rng.chance(0.6)) return { id: rng.pick(ids.real), real: true }
  return { id: rng.pick([`req-${'0'.repeat(8)}-0000-4000-8000-${'0'.repeat(12)}`, 'req-bogus', 'x', 'r'.repeat(64)]), real: false }
}

function chunkFrame(rng: Rng, ids: RequestIds): Record<string, unknown> {
  const { id, real } = requestIdFor(rng, ids)
  const last = real ? ids.lastSeq(id) : rng.int(10)
  // Mostly in order, sometimes a repeat or a step back (4003 seq for a live request).
  const seq = rng.chance(0.85) ? last + rng.pick([1, 1, 1, 2, 1000]) : Math.max(0, last - rng.int(2))
  const data = rng.pick([
    () => `data: {"choices":[{"delta":{"content":${JSON.stringify(oddString(rng))}}}]}\n\n`,
    () => '',
    () => 'data: [DONE]\n\n',
    () => oddString(rng),
    () => 'z'.repeat(rng.pick([100, 1000, 1000, 64 * 1024])),
  ])()
  return { type: 'inference_response_chunk', request_id: id, seq, data }
}

function endFrame(rng: Rng, ids: RequestIds): Record<string, unknown> {
  const f: Record<string, unknown> = { type: 'inference_response_end', request_id: requestIdFor(rng, ids).id, status: rng.pick(END_STATUSES) }
  if (rng.chance(0.4)) f.usage = rng.chance(0.5) ? { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 } : oddValue(rng)
  if (rng.chance(0.2)) f.error = rng.chance(0.5) ? { code: 'backend_oom', message: 'x' } : oddValue(rng)
  return f
}

const OTHER_TYPES = ['hello', 'auth_init', 'auth_proof', 'inference_request', 'cancel_request', 'drain', 'hello_ack', 'metrics', 'HEARTBEAT', 'heartbeat ', '']

// ---- structure-aware mutations ----

/** Bounds the mutations aim at: each numeric field's edges, each text field's length limit. */
const NEAR: Record<string, number[]> = {
  version: [1, 2],
  max_concurrency: [1, 256],
  max_context_tokens: [1, 100_000_000],
  throughput_tps_estimate: [0, 1e6],
  slots_total: [0, 1024],
  slots_free: [0, 1024],
  seq: [0, 2 ** 31 - 1],
}
const TEXT_MAX: Record<string, number> = { provider_id: 64, hostname: 253, model_id: 256, binary_version: 64, request_id: 64, identity_key: 43, signature: 86 }

/** One to three field-level changes to a valid frame; returns the change names for the label. */
export function mutateFields(rng: Rng, frame: Record<string, unknown>): string {
  const ops: string[] = []
  for (let n = rng.range(1, 3); n > 0; n--) {
    const keys = Object.keys(frame)
    const key = keys.length > 0 ? rng.pick(keys) : 'type'
    switch (rng.int(7)) {
      case 0:
        delete frame[key]
        ops.push(`delete(${key})`)
        break
      case 1:
        frame[key] = oddValue(rng)
        ops.push(`odd(${key})`)
        break
      case 2: {
        const near = NEAR[key]
        const max = TEXT_MAX[key]
        if (near !== undefined) frame[key] = oddNumber(rng, near)
        else if (max !== undefined && typeof frame[key] === 'string') {
          const v = frame[key]
          frame[key] = rng.chance(0.5) ? v.slice(0, 1).repeat(max + rng.pick([-1, 0, 1])) : `${v.slice(0, -1)}${rng.pick(['\n', '\u0000', '/', '=', 'é', ' '])}`
        } else frame[key] = oddString(rng)
        ops.push(`edge(${key})`)
        break
      }
      case 3: {
        const k = rng.pick(['x', '__proto__', 'constructor', 'toString', '', oddString(rng).slice(0, 10)])
        setField(frame, k, oddValue(rng))
        ops.push('unknown-field')
        break
      }
      case 4:
        frame.type = rng.chance(0.7) ? rng.pick(OTHER_TYPES) : oddValue(rng)
        ops.push('retype')
        break
      case 5:
        if (Array.isArray(frame.supported_models) || rng.chance(0.3)) {
          frame.supported_models = rng.pick([
            () => Array.from({ length: rng.pick([63, 64, 65, 200]) }, (_, i) => `fm-m${i}`),
            () => [FRAME_MODEL, FRAME_MODEL],
            () => [oddValue(rng)],
            () => 'fm-m0',
          ])()
          ops.push('models')
        } else {
          frame[key] = String(frame[key])
          ops.push(`stringify(${key})`)
        }
        break
      default:
        // Two fields swap values: each has a type, just not its own.
        if (keys.length > 1) {
          const other = rng.pick(keys)
          ;[frame[key], frame[other]] = [frame[other], frame[key]]
        }
        ops.push('swap')
    }
  }
  return ops.join('+')
}

/** A valid frame, then perhaps field mutations, then perhaps byte damage. */
function fromValid(rng: Rng, base: Record<string, unknown>, name: string, pMutate: number, pDamage: number): FuzzFrame {
  let label = name
  if (rng.chance(pMutate)) label += `/${mutateFields(rng, base)}`
  const bytes = Buffer.from(jsonText(base))
  if (!rng.chance(pDamage)) return { kind: 'text', data: bytes, label }
  const d = damage(rng, bytes)
  return { kind: rng.chance(0.05) ? 'binary' : 'text', data: d.bytes, label: `${label}/${d.op}` }
}

/** Bytes that are mostly not JSON at all, as text or binary frames. */
function randomFrame(rng: Rng): FuzzFrame {
  const n = rng.chance(0.9) ? rng.range(0, 64) : rng.range(65, 4096)
  if (rng.chance(0.4)) {
    let s = ''
    for (let i = 0; i < n; i++) s += rng.pick(['{', '}', '[', ']', '"', ':', ',', '\\', ' ', '0', '1', 'e', '-', 'true', 'null', '"type"', '"heartbeat"'])
    return { kind: 'text', data: Buffer.from(s), label: 'random-tokens' }
  }
  return { kind: rng.chance(0.5) ? 'binary' : 'text', data: rng.bytes(n), label: 'random-bytes' }
}

/** A valid-looking frame past a bound: nesting, token count, or bytes. */
function boundFrame(rng: Rng, base: Record<string, unknown>, limits: FrameLimits, firstFrame: boolean): FuzzFrame {
  switch (rng.int(firstFrame ? 4 : 5)) {
    case 0:
      // Depth: the frame itself is level one, so a field nested 7 deep is the largest valid frame.
      return text({ ...base, x: nested(rng.pick([6, 7, 8, 9, 50]), rng.chance(0.5) ? 'array' : 'object') }, 'deep-field')
    case 1:
      return text({ ...base, x: Array.from({ length: rng.pick([990, 1000, 1010, 1020, 5000]) }, () => 0) }, 'many-tokens')
    case 2: {
      // Just under, at and over a size bound, padded with an ignored field.
      const bound = firstFrame && rng.chance(0.8) ? limits.maxHelloBytes : limits.maxFrameBytes
      const room = bound - Buffer.byteLength(jsonText({ ...base, pad: '' }))
      return text({ ...base, pad: 'p'.repeat(room + rng.pick([-1, 0, 1, 1000])) }, `size(${bound})`)
    }
    case 3:
      return { kind: 'declared', size: limits.maxFrameBytes * 2, label: 'declared-size' }
    default:
      return { kind: 'text', data: Buffer.from(new Raw('['.repeat(rng.pick([9, 1000, 100_000]))).text), label: 'deep-unclosed' }
  }
}

// ---- before admission ----

export interface FirstFrameCase {
  v2: boolean
  frame: FuzzFrame
  /** v2: the key whose public half the unmutated auth_init names. */
  key: IdentityKeyPair | null
  /** v2: what to send once a challenge arrives, given the honest proof for it. */
  proof: (honest: AuthProofMessage) => FuzzFrame
}

/** A first frame: a v1 hello, or a v2 auth_init followed by a proof (often honest, often damaged). */
export function firstFrameCase(rng: Rng, keys: IdentityKeyPair[], limits: FrameLimits): FirstFrameCase {
  const v2 = rng.chance(0.45)
  const key = rng.pick(keys)
  const base = v2 ? authInitFrame(rng, keys, key) : { type: 'hello', version: 1, ...helloFields(rng) }
  const r = rng.int(100)
  const frame =
    r < 8
      ? randomFrame(rng)
      : r < 12
        ? boundFrame(rng, base, limits, true)
        : // v2 inits are left valid more often, so that most reach a real challenge.
          fromValid(rng, base, String(base.type), v2 ? 0.6 : 1, 0.2)
  const prng = rng.fork('proof')
  const honestShare = rng.chance(0.1)
  return {
    v2,
    frame,
    key: v2 ? key : null,
    proof: (honest) => {
      if (honestShare) return text(honest, 'auth_proof/honest')
      const r2 = prng.int(100)
      if (r2 < 10) return randomFrame(prng)
      if (r2 < 15) return boundFrame(prng, { ...honest }, limits, true)
      return fromValid(prng, { ...honest }, 'auth_proof', 0.9, 0.25)
    },
  }
}

function closeOf(spec: { code: number; reason: string }): Expected {
  return { close: { code: spec.code, reason: spec.reason } }
}

/** The WebSocket layer's verdict, which comes before the coordinator sees a frame. */
function wireVerdict(f: FuzzFrame, limits: FrameLimits): Expected | null {
  if (f.kind === 'declared' || f.data.length > limits.maxFrameBytes) return { close: { code: 1009, reason: null } }
  if (f.kind === 'text' && !isUtf8(f.data)) return { close: { code: 1007, reason: null } }
  return null
}

/** What a first frame must get: a close, or acceptance (a challenge for v2; admission, or a credential refusal, for v1). */
export function firstFrameVerdict(f: FuzzFrame, v2: boolean, limits: FrameLimits): { expected: Expected; parsed: HelloMessage | AuthInitMessage | null } {
  const wire = wireVerdict(f, limits)
  if (wire !== null) return { expected: wire, parsed: null }
  if (f.kind !== 'text') return { expected: closeOf(Close.notHello), parsed: null }
  if (f.data.length > limits.maxHelloBytes) return { expected: closeOf(withField(Close.invalidHello, 'size')), parsed: null }
  const msg = decodeJson(f.data)
  const p = v2 ? parseAuthInit(msg) : parseHello(msg)
  return p.ok ? { expected: { accept: true }, parsed: p.value } : { expected: closeOf(p.close), parsed: null }
}

/** A proof is accepted only when it is the honest one for this challenge, signed by the key the init named. */
export function proofVerdict(f: FuzzFrame, limits: FrameLimits, honest: AuthProofMessage, signerMatches: boolean): Expected {
  const wire = wireVerdict(f, limits)
  if (wire !== null) return wire
  if (f.kind !== 'text' || f.data.length > limits.maxHelloBytes) return closeOf(Close.invalidToken)
  const p = parseAuthProof(decodeJson(f.data))
  const ok = p.ok && signerMatches && p.value.challenge_id === honest.challenge_id && p.value.signature === honest.signature
  return ok ? { accept: true } : closeOf(Close.invalidToken)
}

// ---- after admission ----

/** A frame for an admitted session. */
export function admittedFrame(rng: Rng, ids: RequestIds, limits: FrameLimits): FuzzFrame {
  const r = rng.int(1000)
  const base =
    r < 400
      ? chunkFrame(rng, ids)
      : r < 580
        ? endFrame(rng, ids)
        : r < 800
          ? heartbeatFrame(rng)
          : { type: rng.pick(OTHER_TYPES), x: rng.chance(0.8) ? oddString(rng) : oddValue(rng) }
  // Most frames stay valid or stray: each that closes the session costs a new admission.
  const k = rng.int(1000)
  if (k < 15) return randomFrame(rng)
  if (k < 25) return boundFrame(rng, base, limits, false)
  return fromValid(rng, base, String(base.type), 0.15, 0.02)
}

/** What an admitted session's frame is, before the dispatcher's seq rule: ignored, a message, or a close. */
export function admittedVerdict(f: FuzzFrame, limits: FrameLimits): { close: Expected } | { message: AdmittedProviderMessage | null } {
  const wire = wireVerdict(f, limits)
  if (wire !== null) return { close: wire }
  if (f.kind !== 'text') return { message: null } // binary frames are ignored after admission
  const shape = frameShape(f.data, MAX_FRAME_DEPTH, MAX_FRAME_TOKENS)
  if (shape !== 'ok') return { close: closeOf(withField(Close.invalidFrame, shape)) }
  const msg = decodeJson(f.data)
  if (msg === null) return { close: closeOf(withField(Close.invalidFrame, 'json')) }
  const p = parseProviderMessage(msg)
  return p.ok ? { message: p.value } : { close: closeOf(p.close) }
}

/** A short, printable view of a frame for a failure report. */
export function preview(f: FuzzFrame): string {
  if (f.kind === 'declared') return `declared ${f.size} bytes`
  const head = f.data.subarray(0, 160)
  return `${f.kind} ${f.data.length} bytes: ${isUtf8(head) ? JSON.stringify(head.toString('utf8')) : `hex ${head.toString('hex')}`}`
}
