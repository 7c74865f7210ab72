/**
 * The provider's parser for what the coordinator sends (specs/protocol.md §2.2, §4.1, §4.4,
 * §4.5). Pure, like the coordinator's: a typed message with only known, bounded fields, null
 * for a type this provider does not know (ignored, so coordinators can add messages), or the
 * close the provider may use. A provider may also just ignore a malformed frame.
 */
import { COORDINATOR_VERSION, DEFAULT_HEARTBEAT_INTERVAL_S, REQUEST_ID_MAX } from './bounds.js'
import { Close, withField } from './close-codes.js'
import { int, requestId, type Json } from './fields.js'
import { TOKEN_RE } from './ids.js'
import { AUTH_STATES, CANCEL_REASONS, type AuthState, type CancelReason, type CoordinatorMessage, type HelloAckMessage } from './messages.js'
import type { Parsed } from './parse-provider-message.js'

export function parseCoordinatorMessage(msg: Json): Parsed<CoordinatorMessage | null> {
  switch (msg.type) {
    case 'hello_ack':
      return parseHelloAck(msg)
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
  return { ok: true, value }
}

function invalid<T>(field: string): Parsed<T> {
  return { ok: false, close: withField(Close.invalidFrame, field) }
}
