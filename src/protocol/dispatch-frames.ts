import { Close, withField } from './close-codes.js'
import type { Parsed } from './frames.js'

/**
 * The dispatch messages of protocol v1 (specs/protocol.md §5). Pure: builders for what the
 * coordinator sends, parsers with bounds for what a provider sends back.
 */

export const END_STATUSES = [
  'complete',
  'cancelled',
  'error_queue_full',
  'error_context_exceeded',
  'error_model_not_loaded',
  'error_internal',
] as const
export type EndStatus = (typeof END_STATUSES)[number]

/** Why the coordinator withdraws a request from a provider. A closed set, like every reason. */
export type CancelReason = 'buyer_disconnected' | 'timeout' | 'buyer_too_slow' | 'response_too_large' | 'coordinator_busy'

export interface Usage {
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
}

export interface ResponseChunk {
  requestId: string
  seq: number
  data: string
}

export interface ResponseEnd {
  requestId: string
  status: EndStatus
  /** Token counts only, when the provider reported them; anything else it sent is dropped. */
  usage: Usage | null
  /** The provider's own error code, trimmed to a log-safe token; never shown to buyers. */
  errorCode: string | null
}

const REQUEST_ID_MAX = 64
const MAX_SEQ = 2 ** 31 - 1
const MAX_TOKENS = 2 ** 31 - 1

export function inferenceRequest(requestId: string, stream: boolean, body: string): string {
  return JSON.stringify({ type: 'inference_request', request_id: requestId, stream, body })
}

export function cancelRequest(requestId: string, reason: CancelReason): string {
  return JSON.stringify({ type: 'cancel_request', request_id: requestId, reason })
}

export function parseResponseChunk(msg: Record<string, unknown>): Parsed<ResponseChunk> {
  const requestId = requestIdOf(msg)
  if (requestId === null) return bad('request_id')
  const seq = msg.seq
  if (typeof seq !== 'number' || !Number.isInteger(seq) || seq < 0 || seq > MAX_SEQ) return bad('seq')
  if (typeof msg.data !== 'string') return bad('data')
  return { ok: true, value: { requestId, seq, data: msg.data } }
}

export function parseResponseEnd(msg: Record<string, unknown>): Parsed<ResponseEnd> {
  const requestId = requestIdOf(msg)
  if (requestId === null) return bad('request_id')
  const status = msg.status
  if (typeof status !== 'string' || !(END_STATUSES as readonly string[]).includes(status)) return bad('status')
  return {
    ok: true,
    value: { requestId, status: status as EndStatus, usage: usageOf(msg.usage), errorCode: errorCodeOf(msg.error) },
  }
}

function requestIdOf(msg: Record<string, unknown>): string | null {
  const id = msg.request_id
  return typeof id === 'string' && id.length > 0 && id.length <= REQUEST_ID_MAX ? id : null
}

/** Usage is informational: a malformed one is dropped rather than failing a good answer. */
function usageOf(v: unknown): Usage | null {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return null
  const u = v as Record<string, unknown>
  const p = count(u.prompt_tokens)
  const c = count(u.completion_tokens)
  if (p === null || c === null) return null
  return { prompt_tokens: p, completion_tokens: c, total_tokens: count(u.total_tokens) ?? p + c }
}

function count(v: unknown): number | null {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= MAX_TOKENS ? v : null
}

function errorCodeOf(v: unknown): string | null {
  const code = v !== null && typeof v === 'object' ? (v as Record<string, unknown>).code : v
  return typeof code === 'string' && /^[A-Za-z0-9_.:-]{1,64}$/.test(code) ? code : null
}

function bad<T>(field: string): Parsed<T> {
  return { ok: false, close: withField(Close.invalidFrame, field) }
}
