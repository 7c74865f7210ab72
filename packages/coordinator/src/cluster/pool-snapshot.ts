/**
 * A node's pool as the other nodes see it (specs/cluster.md §11): every session it holds, with
 * what selection, /v1/models and /poolz read. Pure: plain data in and out, no NATS.
 *
 * A snapshot is a hint, never an authority. Selection on another node reads it; the owner
 * re-checks routingEligible and its own slot count when the dispatch arrives, and a stale
 * snapshot costs a refused dispatch and a failover, never a second routable session.
 */
import {
  AUTH_STATES,
  FAILURE_REASONS,
  MAX_GENERATION,
  PROVIDER_ID_RE,
  PROVIDER_STATUSES,
  type AuthState,
  type FailureReason,
  type ProviderStatus,
} from '@poolcoord/protocol'
import type { ProviderSession } from '../pool/provider-session.js'
import { LEASE_NODE_ID_RE, TOKEN_ID_RE, isRecord, parseJsonRecord } from './lease-value.js'

/** The most rows one chunk may list. */
export const MAX_CHUNK_ROWS = 50_000
/** A chunk is cut once its rows pass this many bytes: far below any max_payload cluster mode accepts (§2.2). */
export const CHUNK_BYTES = 256 * 1024
/** The most chunks one snapshot may have: 4096 × 256 KiB is far more than a node's 50,000 sessions. */
export const MAX_CHUNKS = 4096

/**
 * A node's snapshot is cut into chunks of at most about CHUNK_BYTES, one KV key each
 * (`p.<node>.<i>`), and a manifest (`p.<node>`) written after them, naming the snapshot's sequence
 * number and its chunk count. Every chunk carries the sequence number of the snapshot it belongs
 * to, so a reader assembles a snapshot only when it holds every chunk of that sequence: never half
 * of one publish and half of another. One value per node would be simpler, but a node with many
 * sessions, or sessions with long model lists, would outgrow max_payload and vanish from the
 * other nodes' views.
 */
export interface SnapshotManifest {
  v: 1
  node_id: string
  incarnation: string
  seq: number
  chunks: number
}

export interface SnapshotChunk {
  v: 1
  node_id: string
  incarnation: string
  seq: number
  i: number
  sessions: SnapshotRow[]
}

/** One session, in short keys: a snapshot of thousands of sessions is rewritten several times a second. */
export interface SnapshotRow {
  p: string // provider_id
  a: string // assigned_id
  au: AuthState
  st: ProviderStatus
  sf: number // slots_free
  stt: number // slots_total
  f: number // in flight, as the owner counts it
  mc: number // max_concurrency
  mx: number // max_context_tokens
  tp: number | null // throughput_tps
  m: string[] // models, the first being model_id
  h: string // hostname
  bv: string // binary_version
  tk: string | null // token prefix
  ig: [number, string] | null // identity: key generation and fingerprint
  cd: boolean // cordoned
  dr: boolean // drain requested
  lp: boolean // lease pending (handover)
  cf: number // consecutive failures
  cu: number // cooldown until (epoch ms, 0 when healthy)
  lf?: FailureReason | null // last failure reason; absent from a node that predates it, read as null when unknown
  fs?: number // failing since (epoch ms, 0 when healthy); absent from a node that predates it
  ca: number // connected at (epoch ms)
  hb: number | null // last heartbeat at
  li: number // last inbound at
}

/** `volatile: false` leaves out the two times that every frame moves (shown as 0): for telling whether anything else changed. */
export function snapshotRow(s: ProviderSession, volatile = true): SnapshotRow {
  return {
    p: s.providerId,
    a: s.assignedId,
    au: s.authState,
    st: s.status,
    sf: s.slotsFree,
    stt: s.slotsTotal,
    f: s.inFlight,
    mc: s.maxConcurrency,
    mx: s.maxContextTokens,
    tp: s.throughputTps,
    m: s.models,
    h: s.hostname,
    bv: s.binaryVersion,
    tk: s.tokenPrefix,
    ig: s.identity === null ? null : [s.identity.generation, s.identity.keyFingerprint],
    cd: s.cordoned,
    dr: s.drainRequested,
    lp: s.leasePending === true,
    cf: s.consecutiveFailures,
    cu: s.cooldownUntil,
    lf: s.lastFailure ?? null,
    fs: s.failingSince ?? 0,
    ca: s.connectedAt,
    hb: volatile ? s.lastHeartbeatAt : null,
    li: volatile ? s.lastInboundAt : 0,
  }
}

export function encodeSnapshot(
  nodeId: string,
  incarnation: string,
  seq: number,
  sessions: Iterable<ProviderSession>,
  volatile = true,
): { manifest: string; chunks: string[] } {
  const chunks: string[] = []
  let rows: string[] = []
  let bytes = 0
  const cut = (): void => {
    chunks.push(
      `{"v":1,"node_id":${JSON.stringify(nodeId)},"incarnation":${JSON.stringify(incarnation)},"seq":${seq},"i":${chunks.length},"sessions":[${rows.join(',')}]}`,
    )
    rows = []
    bytes = 0
  }
  for (const s of sessions) {
    const row = JSON.stringify(snapshotRow(s, volatile))
    if (rows.length > 0 && bytes + row.length > CHUNK_BYTES) cut()
    rows.push(row)
    bytes += row.length + 1
  }
  if (rows.length > 0 || chunks.length === 0) cut()
  const manifest: SnapshotManifest = { v: 1, node_id: nodeId, incarnation, seq, chunks: chunks.length }
  return { manifest: JSON.stringify(manifest), chunks }
}

export function parseManifest(text: string): SnapshotManifest | null {
  const v = parseJsonRecord(text)
  if (v === null || v.v !== 1 || !nodeAndIncarnation(v)) return null
  if (!Number.isSafeInteger(v.seq) || (v.seq as number) < 0 || !Number.isInteger(v.chunks) || (v.chunks as number) < 1 || (v.chunks as number) > MAX_CHUNKS)
    return null
  return { v: 1, node_id: v.node_id as string, incarnation: v.incarnation as string, seq: v.seq as number, chunks: v.chunks as number }
}

/** A chunk's header and its sessions, as another node's ProviderSessions; bad rows are dropped one by one. */
export function parseChunk(text: string): { nodeId: string; incarnation: string; seq: number; i: number; sessions: ProviderSession[] } | null {
  const v = parseJsonRecord(text)
  if (v === null || v.v !== 1 || !nodeAndIncarnation(v)) return null
  if (!Number.isSafeInteger(v.seq) || !Number.isInteger(v.i) || (v.i as number) < 0 || (v.i as number) >= MAX_CHUNKS) return null
  if (!Array.isArray(v.sessions) || v.sessions.length > MAX_CHUNK_ROWS) return null
  const nodeId = v.node_id as string
  const sessions: ProviderSession[] = []
  for (const r of v.sessions as unknown[]) {
    const s = sessionOfRow(r, nodeId)
    if (s !== null) sessions.push(s)
  }
  return { nodeId, incarnation: v.incarnation as string, seq: v.seq as number, i: v.i as number, sessions }
}

function nodeAndIncarnation(v: Record<string, unknown>): boolean {
  return typeof v.node_id === 'string' && LEASE_NODE_ID_RE.test(v.node_id) && typeof v.incarnation === 'string' && TOKEN_ID_RE.test(v.incarnation)
}

function identityOk(v: unknown): boolean {
  return (
    Array.isArray(v) &&
    v.length === 2 &&
    typeof v[0] === 'number' &&
    Number.isInteger(v[0]) &&
    v[0] >= 1 &&
    v[0] <= MAX_GENERATION &&
    typeof v[1] === 'string' &&
    /^[0-9a-f]{12}$/.test(v[1])
  )
}

function sessionOfRow(r: unknown, nodeId: string): ProviderSession | null {
  if (!isRecord(r)) return null
  const str = (x: unknown, max: number): x is string => typeof x === 'string' && x.length <= max
  const count = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 0 && x <= 1_000_000
  const time = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x) && x >= 0
  const ok =
    str(r.p, 128) &&
    PROVIDER_ID_RE.test(r.p) &&
    str(r.a, 64) &&
    AUTH_STATES.includes(r.au as AuthState) &&
    PROVIDER_STATUSES.includes(r.st as ProviderStatus) &&
    count(r.sf) &&
    count(r.stt) &&
    count(r.f) &&
    count(r.mc) &&
    count(r.mx) &&
    (r.tp === null || time(r.tp)) &&
    Array.isArray(r.m) &&
    r.m.length >= 1 &&
    r.m.length <= 64 &&
    r.m.every((m) => str(m, 256)) &&
    str(r.h, 256) &&
    str(r.bv, 128) &&
    (r.tk === null || str(r.tk, 12)) &&
    // Absent from a node that predates identity v2 (a rolling upgrade): read as "not pinned".
    (r.ig === undefined || r.ig === null || identityOk(r.ig)) &&
    typeof r.cd === 'boolean' &&
    typeof r.dr === 'boolean' &&
    typeof r.lp === 'boolean' &&
    count(r.cf) &&
    time(r.cu) &&
    (r.fs === undefined || time(r.fs)) &&
    time(r.ca) &&
    (r.hb === null || time(r.hb)) &&
    time(r.li)
  if (!ok) return null
  const models = r.m as string[]
  return {
    providerId: r.p as string,
    assignedId: r.a as string,
    authState: r.au as AuthState,
    tokenPrefix: r.tk as string | null,
    identity: r.ig === undefined || r.ig === null ? null : { generation: (r.ig as [number, string])[0], keyFingerprint: (r.ig as [number, string])[1] },
    hostname: r.h as string,
    binaryVersion: r.bv as string,
    modelId: models[0] as string,
    models,
    maxConcurrency: r.mc as number,
    maxContextTokens: r.mx as number,
    throughputTps: r.tp as number | null,
    status: r.st as ProviderStatus,
    slotsFree: r.sf as number,
    slotsTotal: r.stt as number,
    inFlight: r.f as number,
    consecutiveFailures: r.cf as number,
    cooldownUntil: r.cu as number,
    lastFailure: failureReasonOf(r.lf),
    failingSince: (r.fs ?? 0) as number,
    drainRequested: r.dr as boolean,
    cordoned: r.cd as boolean,
    nodeId,
    leasePending: r.lp as boolean,
    connectedAt: r.ca as number,
    lastHeartbeatAt: r.hb as number | null,
    lastInboundAt: r.li as number,
  }
}

/**
 * The failure reason of a row, null when absent or unknown: a newer node may name a reason this
 * one does not know (a rolling upgrade), and it only labels the row, so it must not drop it.
 */
function failureReasonOf(x: unknown): FailureReason | null {
  return FAILURE_REASONS.includes(x as FailureReason) ? (x as FailureReason) : null
}
