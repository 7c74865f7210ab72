/**
 * Every message of protocol v1 in both directions, as it is on the wire (snake_case), as
 * discriminated unions on `type` (specs/protocol.md). The constructors are the only way the
 * coordinator, the agent, the tests and the bench build a message, so a field is named in one
 * place. Parsers (parse-provider-message.ts, parse-coordinator-message.ts) return these same
 * types, holding only known, bounded fields.
 */
import { COORDINATOR_VERSION, PROTOCOL_VERSION, PROTOCOL_VERSION_V2 } from './bounds.js'
import type { IdentityIntent } from './identity-proof.js'

export type ProviderStatus = 'ready' | 'busy' | 'draining' | 'degraded' | 'unavailable'
export const PROVIDER_STATUSES: readonly ProviderStatus[] = ['ready', 'busy', 'draining', 'degraded', 'unavailable']

/** How a session was admitted (specs/admission.md); strongest first. */
export type AuthState = 'key_proven' | 'bearer_validated' | 'self_minted' | 'bearerless_duplicate'
export const AUTH_STATES: readonly AuthState[] = ['key_proven', 'bearer_validated', 'self_minted', 'bearerless_duplicate']

export const END_STATUSES = ['complete', 'cancelled', 'error_queue_full', 'error_context_exceeded', 'error_model_not_loaded', 'error_internal'] as const
export type EndStatus = (typeof END_STATUSES)[number]

/** Why the coordinator withdraws a request from a provider. A closed set, like every reason. */
export const CANCEL_REASONS = ['buyer_disconnected', 'timeout', 'buyer_too_slow', 'response_too_large', 'coordinator_busy'] as const
export type CancelReason = (typeof CANCEL_REASONS)[number]

export interface Usage {
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
}

// ---- provider → coordinator ----

/** What a provider says about itself in its hello. */
export interface HelloFields {
  provider_id: string
  hostname: string
  model_id: string
  binary_version: string
  max_concurrency: number
  max_context_tokens: number
  supported_models?: string[]
  throughput_tps_estimate?: number
}

export interface HelloMessage extends HelloFields {
  type: 'hello'
  version: typeof PROTOCOL_VERSION
}

export interface HeartbeatMessage {
  type: 'heartbeat'
  status: ProviderStatus
  slots_total: number
  slots_free: number
  model_id?: string
  supported_models?: string[]
}

export interface ResponseChunkMessage {
  type: 'inference_response_chunk'
  request_id: string
  seq: number
  data: string
}

export interface ResponseEndMessage {
  type: 'inference_response_end'
  request_id: string
  status: EndStatus
  usage?: Usage
  /** The provider's own error code; logged at debug level, never shown to buyers. */
  error?: { code: string; message?: string }
  /**
   * The answer's last piece, as a chunk's `data` would carry it: only with status `complete`,
   * only from a provider whose hello_ack listed FEATURE_END_DATA (§4.3). A non-streamed answer
   * then takes one frame instead of two.
   */
  data?: string
}

/** Identity v2's first frame (§2.4): the hello's fields, the key, and what the provider asks for. */
export interface AuthInitMessage extends HelloFields {
  type: 'auth_init'
  version: typeof PROTOCOL_VERSION_V2
  identity_key: string
  intent: IdentityIntent
  /** Only with intent `rotate`: the key that becomes current. */
  next_identity_key?: string
}

export interface AuthProofMessage {
  type: 'auth_proof'
  challenge_id: string
  signature: string
}

export type ProviderMessage = HelloMessage | AuthInitMessage | AuthProofMessage | HeartbeatMessage | ResponseChunkMessage | ResponseEndMessage

// ---- coordinator → provider ----

export interface HelloAckMessage {
  type: 'hello_ack'
  coordinator_version: typeof COORDINATOR_VERSION
  assigned_id: string
  heartbeat_interval_s: number
  auth_state: AuthState
  /** Only when a token was minted for this connection. */
  assigned_provider_token?: string
  /** Identity v2 sessions: the generation of the pinned key after this admission. */
  identity_generation?: number
  /** What this coordinator offers beyond the base protocol (FEATURE_END_DATA); absent means none. */
  features?: string[]
}

export type KeyState = 'pinned' | 'unknown'

export interface AuthChallengeMessage {
  type: 'auth_challenge'
  challenge_id: string
  nonce: string
  origin: string
  issued_at: number
  expires_in_ms: number
  key_state: KeyState
}

export interface InferenceRequestMessage {
  type: 'inference_request'
  request_id: string
  stream: boolean
  /** The buyer's JSON body exactly as sent. */
  body: string
}

export interface CancelRequestMessage {
  type: 'cancel_request'
  request_id: string
  reason: CancelReason
}

export interface DrainMessage {
  type: 'drain'
}

export type CoordinatorMessage = HelloAckMessage | AuthChallengeMessage | InferenceRequestMessage | CancelRequestMessage | DrainMessage

export type Message = ProviderMessage | CoordinatorMessage

// ---- constructors ----

export function hello(fields: HelloFields): HelloMessage {
  return { type: 'hello', version: PROTOCOL_VERSION, ...fields }
}

export function heartbeat(
  status: ProviderStatus,
  slotsTotal: number,
  slotsFree: number,
  models?: { model_id?: string; supported_models?: string[] },
): HeartbeatMessage {
  return { type: 'heartbeat', status, slots_total: slotsTotal, slots_free: slotsFree, ...models }
}

export function responseChunk(requestId: string, seq: number, data: string): ResponseChunkMessage {
  return { type: 'inference_response_chunk', request_id: requestId, seq, data }
}

export function responseEnd(
  requestId: string,
  status: EndStatus,
  extra: { usage?: Usage | null; errorCode?: string | null; data?: string | null } = {},
): ResponseEndMessage {
  const msg: ResponseEndMessage = { type: 'inference_response_end', request_id: requestId, status }
  if (extra.usage) msg.usage = extra.usage
  if (extra.errorCode) msg.error = { code: extra.errorCode }
  if (typeof extra.data === 'string' && status === 'complete') msg.data = extra.data
  return msg
}

export function helloAck(fields: Omit<HelloAckMessage, 'type' | 'coordinator_version'>): HelloAckMessage {
  const msg: HelloAckMessage = {
    type: 'hello_ack',
    coordinator_version: COORDINATOR_VERSION,
    assigned_id: fields.assigned_id,
    heartbeat_interval_s: fields.heartbeat_interval_s,
    auth_state: fields.auth_state,
  }
  if (fields.assigned_provider_token !== undefined) msg.assigned_provider_token = fields.assigned_provider_token
  if (fields.identity_generation !== undefined) msg.identity_generation = fields.identity_generation
  if (fields.features !== undefined) msg.features = fields.features
  return msg
}

export function authInit(fields: HelloFields, key: { identity_key: string; intent: IdentityIntent; next_identity_key?: string | null }): AuthInitMessage {
  const msg: AuthInitMessage = { type: 'auth_init', version: PROTOCOL_VERSION_V2, ...fields, identity_key: key.identity_key, intent: key.intent }
  if (key.next_identity_key !== undefined && key.next_identity_key !== null) msg.next_identity_key = key.next_identity_key
  return msg
}

export function authChallenge(fields: Omit<AuthChallengeMessage, 'type'>): AuthChallengeMessage {
  return { type: 'auth_challenge', ...fields }
}

export function authProof(challengeId: string, signature: string): AuthProofMessage {
  return { type: 'auth_proof', challenge_id: challengeId, signature }
}

export function inferenceRequest(requestId: string, stream: boolean, body: string): InferenceRequestMessage {
  return { type: 'inference_request', request_id: requestId, stream, body }
}

export function cancelRequest(requestId: string, reason: CancelReason): CancelRequestMessage {
  return { type: 'cancel_request', request_id: requestId, reason }
}

export function drain(): DrainMessage {
  return { type: 'drain' }
}

/** The one encoder: a message is one JSON text frame. */
export function encode(msg: Message): string {
  return JSON.stringify(msg)
}
