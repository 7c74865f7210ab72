/**
 * The coordinator's parser for what a provider sends (specs/protocol.md §2.1, §3.1, §4.2,
 * §4.3). Pure: a frame is either a typed message holding only known, bounded fields, or the
 * close to send. Unknown fields are ignored so that newer provider binaries keep working.
 */
import {
  MAX_BINARY_VERSION,
  MAX_CONCURRENCY,
  MAX_CONTEXT_TOKENS,
  MAX_HOSTNAME,
  MAX_MODELS,
  MAX_SEQ,
  MAX_SLOTS,
  MAX_TEXT_FIELD,
  MAX_THROUGHPUT_TPS,
  PROTOCOL_VERSION,
  PROTOCOL_VERSION_V2,
} from './bounds.js'
import { IDENTITY_INTENTS, IDENTITY_KEY_RE, SIGNATURE_RE, UUID_RE, isWeakIdentityKey, type IdentityIntent } from './identity-proof.js'
import { Close, withField, type CloseSpec } from './close-codes.js'
import { errorCode, int, modelList, modelSet, parseUsage, requestId, text, type Json } from './fields.js'
import { PROVIDER_ID_RE } from './ids.js'
import {
  END_STATUSES,
  PROVIDER_STATUSES,
  type AuthInitMessage,
  type AuthProofMessage,
  type HelloFields,
  type EndStatus,
  type HeartbeatMessage,
  type HelloMessage,
  type ProviderStatus,
  type ResponseChunkMessage,
  type ResponseEndMessage,
} from './messages.js'

export type Parsed<T> = { ok: true; value: T } | { ok: false; close: CloseSpec }

/** A message a provider may send once admitted. */
export type AdmittedProviderMessage = HeartbeatMessage | ResponseChunkMessage | ResponseEndMessage

/** The first frame of a v1 connection. `msg` is the decoded frame, or null when it was not a JSON object. */
export function parseHello(msg: Json | null): Parsed<HelloMessage> {
  if (msg === null || msg.type !== 'hello') return { ok: false, close: Close.notHello }
  if (msg.version !== PROTOCOL_VERSION) {
    return typeof msg.version === 'number' ? { ok: false, close: Close.unsupportedVersion } : badHello('version')
  }
  const fields = parseHelloFields(msg)
  if (typeof fields === 'string') return badHello(fields)
  return { ok: true, value: { type: 'hello', version: PROTOCOL_VERSION, ...fields } }
}

/**
 * The first frame of a v2 connection (§2.4). Every field that enters the signed bytes is checked
 * here against a charset without `\n`: provider_id by PROVIDER_ID_RE, the keys by
 * IDENTITY_KEY_RE, the intent by its closed set.
 */
export function parseAuthInit(msg: Json | null): Parsed<AuthInitMessage> {
  if (msg === null || msg.type !== 'auth_init') return { ok: false, close: Close.notHello }
  if (msg.version !== PROTOCOL_VERSION_V2) {
    return typeof msg.version === 'number' ? { ok: false, close: Close.unsupportedVersion } : badHello('version')
  }
  const fields = parseHelloFields(msg)
  if (typeof fields === 'string') return badHello(fields)
  const key = msg.identity_key
  if (typeof key !== 'string' || !IDENTITY_KEY_RE.test(key) || isWeakIdentityKey(key)) return badHello('identity_key')
  const intent = msg.intent
  if (typeof intent !== 'string' || !(IDENTITY_INTENTS as readonly string[]).includes(intent)) return badHello('intent')
  const value: AuthInitMessage = { type: 'auth_init', version: PROTOCOL_VERSION_V2, ...fields, identity_key: key, intent: intent as IdentityIntent }
  const next = msg.next_identity_key
  if (intent === 'rotate') {
    if (typeof next !== 'string' || !IDENTITY_KEY_RE.test(next) || isWeakIdentityKey(next) || next === key) return badHello('next_identity_key')
    value.next_identity_key = next
  } else if (next !== undefined && next !== null) return badHello('next_identity_key')
  return { ok: true, value }
}

/** The proof frame; anything else in its place is not part of the handshake. */
export function parseAuthProof(msg: Json | null): Parsed<AuthProofMessage> {
  if (msg === null || msg.type !== 'auth_proof') return invalid('type')
  if (typeof msg.challenge_id !== 'string' || !UUID_RE.test(msg.challenge_id)) return invalid('challenge_id')
  if (typeof msg.signature !== 'string' || !SIGNATURE_RE.test(msg.signature)) return invalid('signature')
  return { ok: true, value: { type: 'auth_proof', challenge_id: msg.challenge_id, signature: msg.signature } }
}

/** The hello's fields, shared by hello and auth_init; a string names the first bad field. */
function parseHelloFields(msg: Json): HelloFields | string {
  const providerId = msg.provider_id
  if (typeof providerId !== 'string' || !PROVIDER_ID_RE.test(providerId)) return 'provider_id'
  const hostname = text(msg.hostname, MAX_HOSTNAME)
  if (hostname === null) return 'hostname'
  const modelId = text(msg.model_id, MAX_TEXT_FIELD)
  if (modelId === null) return 'model_id'
  const binaryVersion = text(msg.binary_version, MAX_BINARY_VERSION)
  if (binaryVersion === null) return 'binary_version'
  const maxConcurrency = int(msg.max_concurrency, 1, MAX_CONCURRENCY)
  if (maxConcurrency === null) return 'max_concurrency'
  const maxContextTokens = int(msg.max_context_tokens, 1, MAX_CONTEXT_TOKENS)
  if (maxContextTokens === null) return 'max_context_tokens'
  const supported = msg.supported_models === undefined ? undefined : modelList(msg.supported_models)
  if (supported === null) return 'supported_models'
  if (modelSet(modelId, supported).length > MAX_MODELS) return 'supported_models'
  const value: HelloFields = {
    provider_id: providerId,
    hostname,
    model_id: modelId,
    binary_version: binaryVersion,
    max_concurrency: maxConcurrency,
    max_context_tokens: maxContextTokens,
  }
  if (supported !== undefined) value.supported_models = supported
  const tps = msg.throughput_tps_estimate
  if (tps !== undefined && tps !== null) {
    if (typeof tps !== 'number' || !Number.isFinite(tps) || tps < 0 || tps > MAX_THROUGHPUT_TPS) return 'throughput_tps_estimate'
    value.throughput_tps_estimate = tps
  }
  return value
}

function badHello<T>(field: string): Parsed<T> {
  return { ok: false, close: withField(Close.invalidHello, field) }
}

/**
 * A frame after admission. Unknown types parse to null (ignored): that is how later protocol
 * additions roll out.
 */
export function parseProviderMessage(msg: Json): Parsed<AdmittedProviderMessage | null> {
  switch (msg.type) {
    case 'heartbeat':
      return parseHeartbeat(msg)
    case 'inference_response_chunk':
      return parseResponseChunk(msg)
    case 'inference_response_end':
      return parseResponseEnd(msg)
    default:
      return { ok: true, value: null }
  }
}

export function parseHeartbeat(msg: Json): Parsed<HeartbeatMessage> {
  const status = msg.status
  if (typeof status !== 'string' || !PROVIDER_STATUSES.includes(status as ProviderStatus)) return invalid('status')
  const slotsTotal = int(msg.slots_total, 0, MAX_SLOTS)
  if (slotsTotal === null) return invalid('slots_total')
  const slotsFree = int(msg.slots_free, 0, slotsTotal)
  if (slotsFree === null) return invalid('slots_free')
  const value: HeartbeatMessage = { type: 'heartbeat', status: status as ProviderStatus, slots_total: slotsTotal, slots_free: slotsFree }
  if (msg.model_id !== undefined) {
    const modelId = text(msg.model_id, MAX_TEXT_FIELD)
    if (modelId === null) return invalid('model_id')
    value.model_id = modelId
  }
  if (msg.supported_models !== undefined) {
    const supported = modelList(msg.supported_models)
    if (supported === null) return invalid('supported_models')
    value.supported_models = supported
  }
  if (value.model_id !== undefined || value.supported_models !== undefined) {
    const n = modelSet(value.model_id, value.supported_models).length
    if (n === 0 || n > MAX_MODELS) return invalid('supported_models')
  }
  return { ok: true, value }
}

export function parseResponseChunk(msg: Json): Parsed<ResponseChunkMessage> {
  const id = requestId(msg.request_id)
  if (id === null) return invalid('request_id')
  const seq = int(msg.seq, 0, MAX_SEQ)
  if (seq === null) return invalid('seq')
  if (typeof msg.data !== 'string') return invalid('data')
  return { ok: true, value: { type: 'inference_response_chunk', request_id: id, seq, data: msg.data } }
}

export function parseResponseEnd(msg: Json): Parsed<ResponseEndMessage> {
  const id = requestId(msg.request_id)
  if (id === null) return invalid('request_id')
  const status = msg.status
  if (typeof status !== 'string' || !(END_STATUSES as readonly string[]).includes(status)) return invalid('status')
  const value: ResponseEndMessage = { type: 'inference_response_end', request_id: id, status: status as EndStatus }
  const usage = parseUsage(msg.usage)
  if (usage !== null) value.usage = usage
  const code = errorCode(msg.error)
  if (code !== null) value.error = { code }
  if (msg.data !== undefined) {
    // Only a complete answer has a last piece; the frame's 1 MiB bounds its size.
    if (typeof msg.data !== 'string' || value.status !== 'complete') return invalid('data')
    value.data = msg.data
  }
  return { ok: true, value }
}

function invalid<T>(field: string): Parsed<T> {
  return { ok: false, close: withField(Close.invalidFrame, field) }
}
