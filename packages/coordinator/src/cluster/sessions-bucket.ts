import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream'
import { Kvm, type KV } from '@nats-io/kv'
import { ConfigError } from '../errors.js'
import type { Logger } from '../logger.js'
import { parseLease, type IncarnationRef, type SessionLease } from './lease-value.js'
import type { NatsLink } from './nats-link.js'
import { NODES_BUCKET, nodeKey, parseNodeRecord } from './nodes-bucket.js'

/** The KV bucket of session leases, `s.<hex(provider_id)>`, one per provider id with a session somewhere (specs/cluster.md §7). */
export const SESSIONS_BUCKET = 'pc_sessions'
const SESSIONS_STREAM = `KV_${SESSIONS_BUCKET}`
/** The server refuses larger writes: a lease is about 300 bytes, and parseLease reads at most 1 KiB. */
const MAX_STORED_VALUE_BYTES = 4096

/**
 * A key as read. `revision` is what the next compare-and-set must name: 0 for a key never
 * written, the delete marker's revision for a released lease.
 */
export type LeaseEntry =
  { kind: 'none'; revision: number } | { kind: 'unreadable'; revision: number } | { kind: 'lease'; lease: SessionLease; revision: number }

/** Is this incarnation live? Asked of pc_nodes at decision time. */
export type IncarnationLiveness = (who: IncarnationRef) => Promise<boolean>

/**
 * Opens pc_sessions, creating it when absent: history 1, and no TTL, because leases are not
 * renewed one by one; a lease is valid while pc_nodes holds its incarnation. A bucket with a TTL
 * would drop a live owner's lease and let the next claim route beside it: refused at start.
 */
export async function openSessionsBucket(link: NatsLink, log: Logger): Promise<KV> {
  const kvm = new Kvm(link.js)
  try {
    const maxAgeNs = (await link.jsm.streams.info(SESSIONS_STREAM)).config.max_age
    if (maxAgeNs !== 0) {
      throw new ConfigError(
        `the NATS KV bucket ${SESSIONS_BUCKET} drops keys after ${maxAgeNs / 1e6} ms; session leases must never expire by TTL: remove the bucket (nats kv del ${SESSIONS_BUCKET}) and let a coordinator create it`,
      )
    }
  } catch (err) {
    if (!(err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound)) throw err
    const replicas = link.nc.info?.cluster === undefined ? 1 : 3
    // create() also succeeds when another node created the bucket a moment earlier.
    await kvm.create(SESSIONS_BUCKET, { history: 1, replicas, maxValueSize: MAX_STORED_VALUE_BYTES })
    log.info({ event: 'cluster.bucket_created', bucket: SESSIONS_BUCKET, replicas }, 'created the session lease bucket')
  }
  // Bound without direct get, so reads go to the stream leader: a follower could answer stale.
  // (Every decision is still checked by the compare-and-set; fresh reads only spare retries.)
  return await kvm.open(SESSIONS_BUCKET)
}

export async function readLease(kv: KV, key: string): Promise<LeaseEntry> {
  const e = await kv.get(key)
  if (e === null) return { kind: 'none', revision: 0 }
  if (e.operation !== 'PUT') return { kind: 'none', revision: e.revision }
  const lease = parseLease(e.value)
  return lease === null ? { kind: 'unreadable', revision: e.revision } : { kind: 'lease', lease, revision: e.revision }
}

/**
 * Liveness read from the node's key in pc_nodes, at the moment of the decision. Not from the
 * poller's view (nodes-poller.ts): that is up to one interval old, and a node that joined since
 * would look dead, so its sessions could be taken over while it routes them. The key is absent
 * only once it expired, and a node fences itself before its key can expire (§3.2). A key whose
 * value cannot be read counts as live: unknown is never dead.
 */
export async function nodeKeyLiveness(link: NatsLink): Promise<IncarnationLiveness> {
  const nodes = await new Kvm(link.js).open(NODES_BUCKET)
  return async (who) => {
    const e = await nodes.get(nodeKey(who.node_id))
    if (e === null || e.operation !== 'PUT') return false
    const record = parseNodeRecord(e.value)
    return record === null || record.incarnation === who.incarnation
  }
}
