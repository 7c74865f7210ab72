/**
 * The node-to-node messages of a remote attempt (specs/cluster.md §10): subjects, and how each
 * message is laid out in bytes. Pure: no NATS, no I/O; the shells (remote-attempts.ts on the
 * buyer's node, remote-server.ts on the provider's owner) send and receive what this builds.
 *
 * The inference_request frame travels as the origin built it, after one JSON line of routing
 * metadata: no re-encoding and no escaping of a body of up to 4 MiB. Events back are one kind
 * letter, a sequence number and a newline, then the payload: a chunk's data as UTF-8, an end as
 * the provider's end message, re-checked by the protocol's parser on arrival.
 */
import { CANCEL_REASONS, PROVIDER_ID_RE, type CancelReason } from '@poolcoord/protocol'
import { LEASE_NODE_ID_RE, TOKEN_ID_RE, parseJsonRecord } from './lease-value.js'

const enc = new TextEncoder()
const dec = new TextDecoder()
const NL = 0x0a

/** Requests for providers whose socket `nodeId` holds. */
export function dispatchSubject(nodeId: string): string {
  return `pc.n.${nodeId}.dispatch`
}

/** Cancels of attempts `nodeId` runs for other nodes. */
export function cancelSubject(nodeId: string): string {
  return `pc.n.${nodeId}.cancel`
}

/** Where one attempt's events go: on the origin's own subtree, named by a random attempt id. */
export function eventsSubject(originNodeId: string, attemptId: string): string {
  return `pc.n.${originNodeId}.r.${attemptId}`
}

/** Attempt ids are 32 hex digits (a UUID without dashes): always a valid subject token. */
export const ATTEMPT_ID_RE = /^[0-9a-f]{32}$/
const REQUEST_ID_RE = /^[A-Za-z0-9_-]{1,128}$/
/** The metadata line is a few hundred bytes; anything longer is not ours. */
const MAX_META_BYTES = 1024

export interface DispatchMeta {
  /** The attempt id: names the events subject and the cancel. */
  attempt: string
  request_id: string
  provider_id: string
  assigned_id: string
  origin: string
  origin_incarnation: string
}

export function encodeDispatch(meta: DispatchMeta, frame: string): Uint8Array {
  return enc.encode(`${JSON.stringify(meta)}\n${frame}`)
}

export type ParsedDispatch = { ok: true; meta: DispatchMeta; frame: string } | { ok: false }

export function parseDispatch(bytes: Uint8Array, maxFrameBytes: number): ParsedDispatch {
  const nl = bytes.indexOf(NL)
  if (nl <= 0 || nl > MAX_META_BYTES || bytes.length - nl - 1 > maxFrameBytes) return { ok: false }
  const m = parseJsonRecord(dec.decode(bytes.subarray(0, nl)))
  if (m === null) return { ok: false }
  const ok =
    typeof m.attempt === 'string' &&
    ATTEMPT_ID_RE.test(m.attempt) &&
    typeof m.request_id === 'string' &&
    REQUEST_ID_RE.test(m.request_id) &&
    typeof m.provider_id === 'string' &&
    PROVIDER_ID_RE.test(m.provider_id) &&
    typeof m.assigned_id === 'string' &&
    TOKEN_ID_RE.test(m.assigned_id) &&
    typeof m.origin === 'string' &&
    LEASE_NODE_ID_RE.test(m.origin) &&
    typeof m.origin_incarnation === 'string' &&
    TOKEN_ID_RE.test(m.origin_incarnation)
  if (!ok) return { ok: false }
  const meta: DispatchMeta = {
    attempt: m.attempt as string,
    request_id: m.request_id as string,
    provider_id: m.provider_id as string,
    assigned_id: m.assigned_id as string,
    origin: m.origin as string,
    origin_incarnation: m.origin_incarnation as string,
  }
  const frame = dec.decode(bytes.subarray(nl + 1))
  // The frame is the origin's own inference_request (encode() writes type and request_id first):
  // one that names another request would be answered under a request id nobody waits for.
  if (!frame.startsWith(`{"type":"inference_request","request_id":${JSON.stringify(meta.request_id)},`)) return { ok: false }
  return { ok: true, meta, frame }
}

/**
 * The owner's answer to a dispatch. `not_current`: the session is gone or replaced. `ineligible`:
 * routingEligible says no now (full, busy, draining, cordoned, in handover). `unreachable`: its
 * socket is not taking frames. `fenced`: the owner is fenced. `invalid`: the message is not one.
 * Every refusal comes before the provider saw anything, so the origin may fail over.
 */
export const REFUSALS = ['not_current', 'ineligible', 'unreachable', 'fenced', 'invalid'] as const
export type Refusal = (typeof REFUSALS)[number]
export type DispatchReply = { accepted: true } | { accepted: false; reason: Refusal }

/** The refusal an `r` event names, or null for a payload that is not one. */
export function refusalOf(payload: string): Refusal | null {
  return (REFUSALS as readonly string[]).includes(payload) ? (payload as Refusal) : null
}

/**
 * `a` accepted and `r` refused (payload: the refusal), the owner's answer, always seq 0; then
 * `c` chunk, `e` end, `l` lost (the provider's socket closed), `k` keepalive. The answer travels
 * as an event on the attempt's subject, not as a NATS reply of its own: the dispatch is published
 * with that subject as its reply-to, so NATS's "no responders" status arrives there too, and the
 * origin needs no request machinery (a timer and a promise per request).
 */
export type EventKind = 'a' | 'r' | 'c' | 'e' | 'l' | 'k'
export interface NodeEvent {
  kind: EventKind
  seq: number
  /** The chunk's data or the end message's JSON; empty for `l` and `k`. */
  payload: string
}

/**
 * One message carries one or more events of one attempt, in order: the events that arrived from
 * the provider in one turn of the owner's event loop travel together, which under load halves the
 * messages per chunk. Each event is `<kind><seq>,<payload bytes>\n<payload>`; the byte length
 * makes the payload opaque, newlines and all.
 */
export function encodeEvents(events: readonly NodeEvent[]): Uint8Array {
  let text = ''
  for (const e of events) text += `${e.kind}${e.seq},${Buffer.byteLength(e.payload)}\n${e.payload}`
  return enc.encode(text)
}

export function encodeEvent(kind: EventKind, seq: number, payload = ''): Uint8Array {
  return encodeEvents([{ kind, seq, payload }])
}

/** The events of one message, or null if any part of it is malformed. */
export function parseEvents(bytes: Uint8Array): NodeEvent[] | null {
  const out: NodeEvent[] = []
  for (let at = 0; at < bytes.length;) {
    const nl = bytes.indexOf(NL, at)
    if (nl < at + 4 || nl > at + 40) return null
    const m = /^([arcelk])(\d{1,15}),(\d{1,9})$/.exec(dec.decode(bytes.subarray(at, nl)))
    if (m === null) return null
    const len = Number(m[3])
    if (nl + 1 + len > bytes.length) return null
    out.push({ kind: m[1] as EventKind, seq: Number(m[2]), payload: dec.decode(bytes.subarray(nl + 1, nl + 1 + len)) })
    at = nl + 1 + len
  }
  return out.length === 0 ? null : out
}

export interface CancelMessage {
  attempt: string
  reason: CancelReason
}

export function encodeCancel(c: CancelMessage): Uint8Array {
  return enc.encode(`${c.attempt} ${c.reason}`)
}

export function parseCancel(bytes: Uint8Array): CancelMessage | null {
  if (bytes.length > 128) return null
  const [attempt, reason, extra] = dec.decode(bytes).split(' ')
  if (extra !== undefined || attempt === undefined || !ATTEMPT_ID_RE.test(attempt)) return null
  return (CANCEL_REASONS as readonly string[]).includes(reason ?? '') ? { attempt, reason: reason as CancelReason } : null
}
