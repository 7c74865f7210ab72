import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream'
import { Kvm, type KV } from '@nats-io/kv'
import { ConfigError } from '../errors.js'
import type { Logger } from '../logger.js'
import type { FenceTiming } from './fence-clock.js'
import type { NatsLink } from './nats-link.js'

/** The KV bucket of node liveness keys, `n.<node_id>`, one per live node (specs/cluster.md §3). */
export const NODES_BUCKET = 'pc_nodes'
const NODES_STREAM = `KV_${NODES_BUCKET}`
const KEY_SUBJECT_PREFIX = `$KV.${NODES_BUCKET}.`
/** A poll reads at most this many keys: a cluster has a handful of nodes, never thousands. */
const MAX_NODES = 256

export function nodeKey(nodeId: string): string {
  return `n.${nodeId}`
}

/** The value of a node key, as JSON. */
export interface NodeRecord {
  v: 1
  node_id: string
  incarnation: string
  /** When this incarnation began (ISO 8601, the node's wall clock; for people, never for timing). */
  started_at: string
  host: string
  pid: number
}

export interface NodeEntry {
  /** null when the value is not a record this version can read. */
  record: NodeRecord | null
  revision: number
}

export function encodeNodeRecord(r: NodeRecord): string {
  return JSON.stringify(r)
}

export function parseNodeRecord(bytes: Uint8Array): NodeRecord | null {
  if (bytes.length > 4096) return null
  try {
    const v = JSON.parse(new TextDecoder().decode(bytes)) as Partial<NodeRecord> | null
    if (v === null || typeof v !== 'object' || v.v !== 1) return null
    const strings = [v.node_id, v.incarnation, v.started_at, v.host].every((s) => typeof s === 'string' && s.length <= 256)
    if (!strings || typeof v.pid !== 'number') return null
    return v as NodeRecord
  } catch {
    return null
  }
}

/**
 * A write that named the revision it expected and found another: 10071, or 10164 when the
 * server cannot tell the last sequence. Matched on the API code, never the message.
 */
export function isWrongLastSequence(err: unknown): boolean {
  return (
    err instanceof JetStreamApiError &&
    (err.code === JetStreamApiCodes.StreamWrongLastSequence || err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  )
}

/**
 * Opens pc_nodes, creating it (history 1, TTL = timing.ttlMs) when absent. An existing bucket
 * whose TTL is shorter than ours, or absent, would let the server drop a key before the node's
 * fence deadline: that breaks the fencing argument, so the start is refused.
 */
export async function openNodesBucket(link: NatsLink, timing: FenceTiming, log: Logger): Promise<KV> {
  const kvm = new Kvm(link.js)
  let maxAgeNs: number
  try {
    maxAgeNs = (await link.jsm.streams.info(NODES_STREAM)).config.max_age
  } catch (err) {
    if (!(err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound)) throw err
    // One replica on a lone server; a NATS cluster gets three, so a lost server loses no keys.
    const replicas = link.nc.info?.cluster === undefined ? 1 : 3
    log.info({ event: 'cluster.bucket_created', bucket: NODES_BUCKET, ttl_ms: timing.ttlMs, replicas }, 'created the node liveness bucket')
    return await kvm.create(NODES_BUCKET, { history: 1, ttl: timing.ttlMs, replicas })
  }
  const ttlMs = maxAgeNs / 1e6
  if (ttlMs === 0 || ttlMs < timing.ttlMs) {
    throw new ConfigError(
      `the NATS KV bucket ${NODES_BUCKET} keeps keys for ${ttlMs === 0 ? 'ever' : `${ttlMs} ms`}; node fencing needs a TTL of at least ${timing.ttlMs} ms: remove the bucket (nats kv del ${NODES_BUCKET}) and let a coordinator create it`,
    )
  }
  if (ttlMs > timing.ttlMs) {
    log.warn(
      { event: 'cluster.bucket_ttl_long', bucket: NODES_BUCKET, ttl_ms: ttlMs },
      'the node bucket TTL is longer than needed: a dead node is noticed later',
    )
  }
  return await kvm.open(NODES_BUCKET)
}

/** Every node key present now, by node id. Deleted keys and unreadable values are left out. */
export async function readNodes(link: NatsLink, kv: KV): Promise<Map<string, NodeEntry & { record: NodeRecord }>> {
  // Stream info lists the keys in one request; kv.keys() would create a consumer per poll.
  const info = await link.jsm.streams.info(NODES_STREAM, { subjects_filter: `${KEY_SUBJECT_PREFIX}n.>` })
  const keys = Object.keys(info.state.subjects ?? {})
    .slice(0, MAX_NODES)
    .map((s) => s.slice(KEY_SUBJECT_PREFIX.length))
  const entries = await Promise.all(keys.map((k) => kv.get(k)))
  const out = new Map<string, NodeEntry & { record: NodeRecord }>()
  for (const [i, e] of entries.entries()) {
    if (e === null || e.operation !== 'PUT') continue
    const record = parseNodeRecord(e.value)
    if (record !== null && nodeKey(record.node_id) === keys[i]) out.set(record.node_id, { record, revision: e.revision })
  }
  return out
}
