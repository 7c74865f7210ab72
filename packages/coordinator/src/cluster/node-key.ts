import { setTimeout as delay } from 'node:timers/promises'
import type { KV } from '@nats-io/kv'
import { ConfigError } from '../errors.js'
import type { Logger } from '../logger.js'
import type { FenceTiming } from './fence-clock.js'
import { isWrongLastSequence, parseNodeRecord, type NodeEntry } from './nodes-bucket.js'

export type Claim = { revision: number } | { holder: NodeEntry }

/**
 * Writes `record` to this node's key if the key is free (absent, deleted or expired), or returns
 * who holds it. A holder for which `isMine` says yes is one of our own earlier writes that landed
 * after its reply was lost: the key is ours, and is written over.
 */
export async function claimNodeKey(kv: KV, key: string, record: string, isMine: (incarnation: string) => boolean, timeoutMs: number): Promise<Claim> {
  let expected = 0
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return { revision: await kv.put(key, record, { previousSeq: expected, timeout: timeoutMs }) }
    } catch (err) {
      if (!isWrongLastSequence(err)) throw err
    }
    const e = await kv.get(key)
    if (e === null || e.operation !== 'PUT') {
      expected = e?.revision ?? 0 // a delete marker is replaced by naming its revision
      continue
    }
    const current: NodeEntry = { record: parseNodeRecord(e.value), revision: e.revision }
    if (current.record !== null && isMine(current.record.incarnation)) {
      return { revision: await kv.put(key, record, { previousSeq: current.revision, timeout: timeoutMs }) }
    }
    return { holder: current }
  }
  throw new Error('the node key changed under every claim attempt')
}

/**
 * A starting node's claim. A key that keeps being renewed belongs to a live process: the start is
 * refused. One that stands still is an earlier incarnation that crashed: it is waited out, which
 * takes at most one TTL, so two incarnations of one node id never hold the key at once.
 */
export async function claimAtStart(o: {
  nodeId: string
  claim: () => Promise<Claim>
  now: () => number
  timing: FenceTiming
  log: Logger
}): Promise<{ revision: number; sentAt: number }> {
  const giveUpAt = o.now() + o.timing.ttlMs + 2 * o.timing.renewIntervalMs
  let first: NodeEntry | null = null
  for (;;) {
    const sentAt = o.now()
    const claim = await o.claim()
    if ('revision' in claim) return { revision: claim.revision, sentAt }
    if (first === null) {
      first = claim.holder
      o.log.info(
        { event: 'node.waiting_for_key', node_id: o.nodeId, holder: claim.holder.record },
        'this node id is held by an earlier process; waiting for its key to expire',
      )
    } else if (claim.holder.revision !== first.revision || o.now() >= giveUpAt) {
      throw new ConfigError(nodeIdInUseMessage(o.nodeId, claim.holder))
    }
    await delay(o.timing.renewIntervalMs)
  }
}

/** The live value of a node key, or null when it is absent, deleted or expired. */
export async function readNodeKey(kv: KV, key: string): Promise<NodeEntry | null> {
  const e = await kv.get(key)
  if (e === null || e.operation !== 'PUT') return null
  return { record: parseNodeRecord(e.value), revision: e.revision }
}

function nodeIdInUseMessage(nodeId: string, holder: NodeEntry): string {
  const r = holder.record
  const who = r === null ? 'another process' : `the coordinator on ${r.host} (pid ${r.pid}, since ${r.started_at})`
  return `node id ${nodeId} is in use by ${who}, which keeps renewing it: give each coordinator its own COORD_NODE_ID (or data dir), or stop the other one`
}
