/**
 * The provider's parser for what the coordinator sends (specs/protocol.md §2.2, §4.1, §4.4,
 * §4.5). Pure, like the coordinator's: a typed message with only known, bounded fields, null
 * for a type this provider does not know (ignored, so coordinators can add messages), or the
 * close the provider may use. A provider may also just ignore a malformed frame.
 */
import { COORDINATOR_VERSION, DEFAULT_HEARTBEAT_INTERVAL_S, MAX_FEATURES, MAX_GENERATION, REQUEST_ID_MAX } from './bounds.js'
import { Close, withField } from './close-codes.js'
import { int, requestId, type Json } from './fields.js'
import { TOKEN_RE } from './ids.js'
import { NONCE_RE, ORIGIN_RE, UUID_RE } from './identity-proof.js'
import {
  AUTH_STATES,
  CANCEL_REASONS,
  type AuthChallengeMessage,
  type AuthState,
  type CancelReason,
  type CoordinatorMessage,
  type HelloAckMessage,
  type KeyState,
} from './messages.js'
import type { Parsed } from './parse-provider-message.js'

export function parseCoordinatorMessage(msg: Json): Parsed<CoordinatorMessage | null> {
  switch (msg.type) {
    case 'hello_ack':
      return parseHelloAck(msg)
    case 'auth_challenge':
      return parseAuthChallenge(msg)
    case 'inference_request': {
      const id = requestId(msg.request_id)
      if (id === null) return invalid('request_id')
      // Absent means not streaming, as reference coordinators send it; present must be a boolean.
      if (msg.stream !== undefined && typeof msg.stream !== 'boolean') return invalid('stream')
      if (typeof msg.body !== 'string') return invalid('body')
      return { ok: true, value: { type: 'inference_request', request_id: id, stream: msg.stream === true, body: msg.body } }
    }
    case 'cancel_request': {
      const id = requestId(msg.request_id)
      if (id === null) return invalid('request_id')
      // An unknown reason still cancels: the reason is informational for the provider.
      const reason = (CANCEL_REASONS as readonly unknown[]).includes(msg.reason) ? (msg.reason as CancelReason) : 'timeout'
      return { ok: true, value: { type: 'cancel_request', request_id: id, reason } }
    }
    case 'drain':
      return { ok: true, value: { type: 'drain' } }
    default:
      return { ok: true, value: null }
  }
}

export function parseHelloAck(msg: Json): Parsed<HelloAckMessage> {
  if (msg.type !== 'hello_ack') return invalid('type')
  if (msg.coordinator_version !== COORDINATOR_VERSION) return invalid('coordinator_version')
  const assigned = msg.assigned_id
  if (typeof assigned !== 'string' || assigned.length === 0 || assigned.length > REQUEST_ID_MAX) return invalid('assigned_id')
  // Absent means the protocol's default of 30 s (protocol.md §2.2), as older coordinators send it.
  const interval = msg.heartbeat_interval_s === undefined ? DEFAULT_HEARTBEAT_INTERVAL_S : int(msg.heartbeat_interval_s, 1, 3600)
  if (interval === null) return invalid('heartbeat_interval_s')
  if (!(AUTH_STATES as readonly unknown[]).includes(msg.auth_state)) return invalid('auth_state')
  const value: HelloAckMessage = {
    type: 'hello_ack',
    coordinator_version: COORDINATOR_VERSION,
    assigned_id: assigned,
    heartbeat_interval_s: interval,
    auth_state: msg.auth_state as AuthState,
  }
  // A token is accepted only in the exact form; anything else is never stored or presented.
  if (msg.assigned_provider_token !== undefined) {
    if (typeof msg.assigned_provider_token !== 'string' || !TOKEN_RE.test(msg.assigned_provider_token)) {
      return invalid('assigned_provider_token')
    }
    value.assigned_provider_token = msg.assigned_provider_token
  }
  if (msg.identity_generation !== undefined) {
    const g = int(msg.identity_generation, 1, MAX_GENERATION)
    if (g === null) return invalid('identity_generation')
    value.identity_generation = g
  }
  if (msg.features !== undefined) {
    const f = msg.features
    // Names this provider does not know are kept and never acted on: coordinators add features.
    if (!Array.isArray(f) || f.length > MAX_FEATURES || !f.every((x) => typeof x === 'string' && FEATURE_RE.test(x))) return invalid('features')
    value.features = f as string[]
  }
  return { ok: true, value }
}

/** What a v2 agent checks before it signs anything (§2.4); the origin is compared by the agent. */
export function parseAuthChallenge(msg: Json): Parsed<AuthChallengeMessage> {
  if (msg.type !== 'auth_challenge') return invalid('type')
  if (typeof msg.challenge_id !== 'string' || !UUID_RE.test(msg.challenge_id)) return invalid('challenge_id')
  if (typeof msg.nonce !== 'string' || !NONCE_RE.test(msg.nonce)) return invalid('nonce')
  if (typeof msg.origin !== 'string' || !ORIGIN_RE.test(msg.origin)) return invalid('origin')
  const issuedAt = int(msg.issued_at, 0, Number.MAX_SAFE_INTEGER)
  if (issuedAt === null) return invalid('issued_at')
  const expires = int(msg.expires_in_ms, 1, 600_000)
  if (expires === null) return invalid('expires_in_ms')
  if (msg.key_state !== 'pinned' && msg.key_state !== 'unknown') return invalid('key_state')
  return {
    ok: true,
    value: {
      type: 'auth_challenge',
      challenge_id: msg.challenge_id,
      nonce: msg.nonce,
      origin: msg.origin,
      issued_at: issuedAt,
      expires_in_ms: expires,
      key_state: msg.key_state as KeyState,
    },
  }
}

const FEATURE_RE = /^[a-z0-9_]{1,32}$/

function invalid<T>(field: string): Parsed<T> {
  return { ok: false, close: withField(Close.invalidFrame, field) }
}
