/**
 * The session lease as stored in the pc_sessions bucket: its key, its JSON value, and the checks
 * applied to every value read back (specs/cluster.md §7). Pure: no NATS, no I/O.
 *
 * Anything can be written into a KV bucket by hand or by another version, so a value is trusted
 * only after `parseLease` rebuilt it field by field; a value it rejects is "unreadable", and the
 * rules treat an unreadable lease as held by a live owner they cannot name (never as free).
 */
import { AUTH_STATES, PROVIDER_ID_RE, PROVIDER_STATUSES, type AuthState, type ProviderStatus } from '@poolcoord/protocol'
import { InvalidProviderIdError } from '../errors.js'

/** What a lease value may weigh. A real one is about 300 bytes; the bucket itself refuses more than 4 KiB. */
export const MAX_LEASE_BYTES = 1024

/** The same rule as config.ts NODE_ID_PATTERN (a test keeps them equal); config.ts reads the environment, which this pure module may not import. */
export const LEASE_NODE_ID_RE = /^[a-z0-9][a-z0-9-]{0,62}$/
/** Incarnations and assigned ids are UUIDs; tests use short names. Either way, a bounded token. */
export const TOKEN_ID_RE = /^[A-Za-z0-9_-]{1,64}$/

/** One connection, cluster-wide: the node and incarnation that hold its socket, and its assigned_id. */
export interface SessionRef {
  node_id: string
  incarnation: string
  assigned_id: string
}

/** A node incarnation: what pc_nodes says is live or not. */
export type IncarnationRef = Pick<SessionRef, 'node_id' | 'incarnation'>

/**
 * `active`: the owner may route. `handover`: the owner replaced `prev`, which may still be
 * routing; the owner waits until `prev` let go (it writes `active`) or `prev`'s incarnation died.
 */
export type LeaseState = 'active' | 'handover'

export interface SessionLease extends SessionRef {
  v: 1
  auth_state: AuthState
  /** The owner's last reported status that matters to decideRegistration (lease-decision.ts statusMatters). */
  status: ProviderStatus
  state: LeaseState
  /** Present exactly when state is `handover`. */
  prev?: SessionRef
}

/**
 * `s.<hex of the id's bytes>`. Provider ids may be `a..b`, `.x` or `-`, which are not valid NATS
 * subject tokens; hex always is, and it maps back one to one.
 */
export function leaseKey(providerId: string): string {
  if (!PROVIDER_ID_RE.test(providerId)) throw new InvalidProviderIdError()
  let hex = ''
  for (const b of new TextEncoder().encode(providerId)) hex += b.toString(16).padStart(2, '0')
  return `s.${hex}`
}

/** The provider id a key names, or null for a key this version never writes. */
export function providerIdOfKey(key: string): string | null {
  const m = /^s\.((?:[0-9a-f]{2}){1,64})$/.exec(key)
  if (m === null) return null
  const hex = m[1] as string
  const bytes = new Uint8Array(hex.length / 2)
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16)
  const id = new TextDecoder().decode(bytes)
  return PROVIDER_ID_RE.test(id) ? id : null
}

export function sameSession(a: SessionRef, b: SessionRef): boolean {
  return a.node_id === b.node_id && a.incarnation === b.incarnation && a.assigned_id === b.assigned_id
}

export function sameIncarnation(a: IncarnationRef, b: IncarnationRef): boolean {
  return a.node_id === b.node_id && a.incarnation === b.incarnation
}

export function sessionRef(s: SessionRef): SessionRef {
  return { node_id: s.node_id, incarnation: s.incarnation, assigned_id: s.assigned_id }
}

/** Serialises a lease; refuses (throws) to write anything parseLease would not read back. */
export function encodeLease(lease: SessionLease): Uint8Array {
  const ordered: SessionLease = { v: 1, ...sessionRef(lease), auth_state: lease.auth_state, status: lease.status, state: lease.state }
  if (lease.prev !== undefined) ordered.prev = sessionRef(lease.prev)
  const bytes = new TextEncoder().encode(JSON.stringify(ordered))
  if (parseLease(bytes) === null) throw new Error('refusing to write an invalid session lease')
  return bytes
}

/** The lease a value holds, rebuilt from checked fields only; null when the value is not one. */
export function parseLease(bytes: Uint8Array): SessionLease | null {
  if (bytes.length > MAX_LEASE_BYTES) return null
  let v: unknown
  try {
    v = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch {
    return null
  }
  if (!isRecord(v) || v.v !== 1) return null
  const owner = parseRef(v)
  const { auth_state, status, state } = v
  if (owner === null || !AUTH_STATES.includes(auth_state as AuthState) || !PROVIDER_STATUSES.includes(status as ProviderStatus)) return null
  const lease: SessionLease = { v: 1, ...owner, auth_state: auth_state as AuthState, status: status as ProviderStatus, state: 'active' }
  if (state === 'active' && v.prev === undefined) return lease
  if (state !== 'handover' || !isRecord(v.prev)) return null
  const prev = parseRef(v.prev)
  return prev === null ? null : { ...lease, state: 'handover', prev }
}

function parseRef(v: Record<string, unknown>): SessionRef | null {
  const { node_id, incarnation, assigned_id } = v
  if (typeof node_id !== 'string' || !LEASE_NODE_ID_RE.test(node_id)) return null
  if (typeof incarnation !== 'string' || !TOKEN_ID_RE.test(incarnation)) return null
  if (typeof assigned_id !== 'string' || !TOKEN_ID_RE.test(assigned_id)) return null
  return { node_id, incarnation, assigned_id }
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** A JSON object read from another node, or null for anything else: what every cluster value and message starts from. */
export function parseJsonRecord(text: string): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(text)
    return isRecord(v) ? v : null
  } catch {
    return null
  }
}
