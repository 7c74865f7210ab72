import path from 'node:path'
import { OPERATOR_KEY, freePort, startCoordinator } from './coordinator.mjs'
import { sleep } from './stats.mjs'

/**
 * Coordinator nodes of one cluster (specs/cluster.md): one NATS server, one PostgreSQL
 * database, each node with its own id, port and data dir. Nodes are started one after another,
 * each once the last serves, as the coordinator's own cluster tests do: simultaneous first
 * starts on a fresh NATS server have raced on the liveness bucket. Started nodes are pushed
 * into `into` as they come up, so that the caller can stop a half-started cluster.
 */
export async function startClusterNodes({ ids, natsUrl, dbUrl, ttlMs, workDir, profileDir, label, into }) {
  for (const id of ids) {
    const node = await startCoordinator({
      dbUrl,
      port: await freePort(),
      workDir: path.join(workDir, id),
      profileDir,
      label: `${label}-${id}`,
      extraEnv: { COORD_NATS_URL: natsUrl, COORD_NODE_ID: id, COORD_NODE_TTL_MS: String(ttlMs) },
    })
    into.push(Object.assign(node, { nodeId: id }))
  }
  await waitForMembership(into, ids.length)
  return into
}

/** Until every node's /healthz counts `count` live nodes (each polls pc_nodes on a timer). */
export async function waitForMembership(nodes, count, timeoutMs = 30_000) {
  const deadline = performance.now() + timeoutMs
  for (;;) {
    const seen = await Promise.all(nodes.map(async (n) => (await n.health()).cluster?.live_nodes ?? 0))
    if (seen.every((s) => s === count)) return
    if (performance.now() > deadline) throw new Error(`cluster: nodes see ${seen.join('/')} live nodes after ${timeoutMs} ms, expected ${count}`)
    await sleep(100)
  }
}

/**
 * The provider ids routable in one node's /poolz on any node but `except`. /poolz lists every
 * provider of the cluster with its owner, and rows of a node whose liveness key has not
 * expired yet may still read routable: only rows owned elsewhere prove a provider has moved.
 */
export async function routableIds(node, { match, except = null }) {
  const poolz = await node.poolz()
  const ids = new Set()
  for (const r of poolz.pool) if (r.routing_eligible && r.node_id !== except && match.test(r.provider_id)) ids.add(r.provider_id)
  return { ids, poolz }
}

/** Remote attempt outcomes from a node's /metrics (poolcoord_cluster_remote_attempts_total), by role and outcome. */
export async function remoteAttempts(node) {
  const res = await fetch(`${node.url}/metrics`, { headers: { authorization: `Bearer ${OPERATOR_KEY}` } })
  const text = await res.text()
  const out = {}
  for (const m of text.matchAll(/^poolcoord_cluster_remote_attempts_total\{([^}]*)\} (\S+)$/gm)) {
    const labels = Object.fromEntries([...m[1].matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]))
    out[`${labels.role}:${labels.outcome}`] = Number(m[2])
  }
  return out
}
