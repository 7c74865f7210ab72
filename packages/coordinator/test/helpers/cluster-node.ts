import { Kvm, type KV } from '@nats-io/kv'
import type { Test } from 'tap'
import type { FenceTiming } from '../../src/cluster/fence-clock.js'
import { NatsLink } from '../../src/cluster/nats-link.js'
import { NodeLiveness } from '../../src/cluster/node-liveness.js'
import { NODES_BUCKET, nodeKey, parseNodeRecord, type NodeEntry } from '../../src/cluster/nodes-bucket.js'
import { captureLogs, type CapturedLogs } from './logs.js'
import type { NatsServer } from './nats-server.js'

export const MiB = 1024 * 1024

/**
 * Short protocol timers, so a fence takes seconds: TTL 4 s, fence 1.5 s before it (deadline 2.5 s
 * after a renewal is sent), renewal every 0.5 s. The same rules as the defaults (10 / 3 / 2 s).
 */
export const TEST_TIMING: FenceTiming = { ttlMs: 4_000, marginMs: 1_500, renewIntervalMs: 500 }

export interface TestNode {
  node: NodeLiveness
  link: NatsLink
  logs: CapturedLogs
}

export async function connectLink(t: Test, nats: NatsServer, name = 'test'): Promise<NatsLink> {
  const link = await NatsLink.connect({ servers: [nats.url], name, log: captureLogs().logger, connectTimeoutMs: 2_000, requestTimeoutMs: 2_000 })
  t.teardown(() => link.close())
  return link
}

/** A node on its own NATS connection, stopped (and its connection closed) at teardown. */
export async function startNode(t: Test, nats: NatsServer, nodeId: string, timing: FenceTiming = TEST_TIMING): Promise<TestNode> {
  const logs = captureLogs()
  const link = await NatsLink.connect({ servers: [nats.url], name: nodeId, log: logs.logger, connectTimeoutMs: 2_000, requestTimeoutMs: 2_000 })
  t.teardown(() => link.close())
  const node = await NodeLiveness.start({ link, nodeId, log: logs.logger, timing })
  t.teardown(() => node.stop())
  return { node, link, logs }
}

/** A bystander's view of pc_nodes, on a connection of its own. */
export async function observe(t: Test, nats: NatsServer): Promise<{ kv: KV; key(nodeId: string): Promise<NodeEntry | null> }> {
  const link = await connectLink(t, nats, 'observer')
  const kv = await new Kvm(link.js).open(NODES_BUCKET)
  return {
    kv,
    async key(nodeId) {
      const e = await kv.get(nodeKey(nodeId))
      return e === null || e.operation !== 'PUT' ? null : { record: parseNodeRecord(e.value), revision: e.revision }
    },
  }
}

/** Polls until `cond` holds; fails after `timeoutMs`. For state reached through the protocol's own timers. */
export async function pollUntil(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs
  while (!(await cond())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}
