import { randomBytes } from 'node:crypto'
import pg from 'pg'
import type { Test } from 'tap'
import type { PoolzResponse } from '@poolcoord/protocol'
import { spawnCoordinator, childUrls, type ChildCoordinator } from './child-coordinator.js'
import { TEST_DATABASE_URL } from './db.js'
import { startNatsServer, type NatsServer } from './nats-server.js'
import { OPERATOR_KEY } from './service.js'

/**
 * Cluster mode needs PostgreSQL, so these tests always run against a real server: the suite's
 * TEST_DATABASE_URL when set, otherwise the machine's local one (CI starts it). Each test gets a
 * database of its own, dropped at teardown.
 */
export const CLUSTER_PG_URL = TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'

/** A node TTL short enough that a crash is noticed in seconds: fence 2.8 s after a renewal, key gone after 4 s. */
export const TEST_NODE_TTL_MS = 4000

export async function createClusterDatabase(t: Test): Promise<string> {
  const name = `pc_cluster_${randomBytes(6).toString('hex')}`
  await adminQuery(`CREATE DATABASE ${name}`)
  t.teardown(() => adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`))
  const url = new URL(CLUSTER_PG_URL)
  url.pathname = `/${name}`
  return url.toString()
}

async function adminQuery(text: string): Promise<void> {
  const client = new pg.Client({ connectionString: CLUSTER_PG_URL })
  await client.connect()
  try {
    await client.query(text)
  } finally {
    await client.end()
  }
}

export interface NodeProc extends ChildCoordinator {
  nodeId: string
  url: string
  wsUrl: string
  poolz(): Promise<PoolzResponse>
  healthz(): Promise<{ status: number; body: Record<string, unknown> }>
}

export interface TestCluster {
  nats: NatsServer
  databaseUrl: string
  nodes: NodeProc[]
  /** Starts one more node (or restarts one under the same id and data dir). */
  start(nodeId: string, env?: Record<string, string>): Promise<NodeProc>
}

/**
 * Real coordinator processes (src/bin.ts) on one private nats-server (JetStream, max_payload
 * 8 MiB) and one fresh PostgreSQL database. Nodes start one after another, each once the last
 * is serving.
 */
export async function startCluster(t: Test, n: number, opts: { env?: Record<string, string>; nats?: NatsServer } = {}): Promise<TestCluster> {
  const nats = opts.nats ?? (await startNatsServer(t, { maxPayload: 8 * 1024 * 1024 }))
  const databaseUrl = await createClusterDatabase(t)
  const cluster: TestCluster = {
    nats,
    databaseUrl,
    nodes: [],
    async start(nodeId, env = {}) {
      const child = spawnCoordinator(t, {
        COORD_NATS_URL: nats.url,
        DATABASE_URL: databaseUrl,
        COORD_NODE_ID: nodeId,
        COORD_NODE_TTL_MS: String(TEST_NODE_TTL_MS),
        COORD_LOG_LEVEL: 'info',
        // As in startTestService: every test connects from one address (a test may set them back).
        COORD_MINT_RATE_ADDRESS: 'off',
        COORD_MINT_RATE_PREFIX: 'off',
        COORD_MINT_RATE_GLOBAL: 'off',
        ...opts.env,
        ...env,
      })
      const { url, wsUrl } = await childUrls(child)
      const node: NodeProc = Object.assign(child, {
        nodeId,
        url,
        wsUrl,
        async poolz() {
          const res = await fetch(`${url}/poolz`, { headers: { authorization: `Bearer ${OPERATOR_KEY}` } })
          if (res.status !== 200) throw new Error(`/poolz on ${nodeId}: ${res.status}`)
          return (await res.json()) as PoolzResponse
        },
        async healthz() {
          const res = await fetch(`${url}/healthz`)
          return { status: res.status, body: (await res.json()) as Record<string, unknown> }
        },
      })
      cluster.nodes.push(node)
      return node
    },
  }
  for (let i = 1; i <= n; i++) await cluster.start(`n${i}`)
  // Every node sees every other before the test begins (each polls pc_nodes every 800 ms).
  await until('every node sees the others', async () => {
    for (const node of cluster.nodes) if ((await node.poolz()).cluster?.nodes.length !== n) return false
    return true
  })
  return cluster
}

/** Polls until `cond` holds; for state reached through the protocol's own timers. */
export async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = performance.now() + timeoutMs
  while (!(await cond())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** Resolves once `id` is routable in node's /poolz view, on the node named by `on` when given. */
export async function routableOn(node: NodeProc, id: string, on?: string, timeoutMs?: number): Promise<void> {
  await until(
    `${id} routable in ${node.nodeId}'s view${on === undefined ? '' : ` on ${on}`}`,
    async () => (await node.poolz()).pool.some((r) => r.provider_id === id && r.routing_eligible && (on === undefined || r.node_id === on)),
    timeoutMs,
  )
}
