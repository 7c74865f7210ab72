import path from 'node:path'
import { stopChild } from '../lib/children.mjs'
import { startClusterNodes } from '../lib/cluster.mjs'
import { freePort, logEvents, startCoordinator } from '../lib/coordinator.mjs'
import { createDatabase, dropDatabase } from '../lib/database.mjs'
import { startNatsServer } from '../lib/nats-server.mjs'
import { measureClusterHerd } from './cluster-herd.mjs'
import { measureRelay } from './cluster-relay.mjs'

const NODE_IDS = ['n1', 'n2', 'n3']

/**
 * Cluster mode: three coordinator nodes on a private nats-server and one PostgreSQL database,
 * next to a single-node coordinator as the same-run baseline. First the relay (a buyer on one
 * node, the provider on another) against local relaying; then node failure (SIGKILL of one of
 * three nodes holding a herd of providers). The herd comes last because it kills a node.
 */
export async function runCluster(env) {
  const { adminUrl, workDir, profileDir, sizes } = env
  const dir = path.join(workDir, 'cluster')
  const ttlMs = sizes.clusterTtlMs
  const nodes = []
  const helpers = []
  let nats = null
  let single = null
  const dbs = []
  try {
    nats = await startNatsServer({ dir: path.join(dir, 'nats') })
    const singleDb = await createDatabase(adminUrl)
    dbs.push(singleDb)
    const clusterDb = await createDatabase(adminUrl)
    dbs.push(clusterDb)
    const startedAt = performance.now()
    // The baseline starts alongside the cluster's nodes (which start one by one): a second saved for CI.
    // allSettled, so that nothing is still starting when the finally below stops what exists.
    const started = await Promise.allSettled([
      startCoordinator({ dbUrl: singleDb.url, port: await freePort(), workDir: path.join(dir, 'single'), profileDir, label: 'coordinator-single' }).then(
        (c) => (single = c),
      ),
      startClusterNodes({ ids: NODE_IDS, natsUrl: nats.url, dbUrl: clusterDb.url, ttlMs, workDir: dir, profileDir, label: 'coordinator-cluster', into: nodes }),
    ])
    for (const s of started) if (s.status === 'rejected') throw s.reason
    const formedS = (performance.now() - startedAt) / 1000
    env.log(`cluster: ${NODE_IDS.length} nodes up and seeing each other after ${formedS.toFixed(1)} s (TTL ${ttlMs} ms)`)

    const relay = await measureRelay(env, { single, nodes, nats, helpers })
    // The relay's providers would otherwise sit among the herd's.
    for (const h of helpers.splice(0)) await stopChild(h)
    const herd = await measureClusterHerd(env, { nodes, nats, dbUrl: clusterDb.url, ttlMs })
    const logs = Object.fromEntries([single, ...nodes].map((c) => [path.basename(c.logFile, '.log'), logEvents(c.logFile)]))
    return { rows: [...relay.rows, ...herd.rows], details: { ttlMs, formedS, relay: relay.details, herd: herd.details, logEvents: logs } }
  } finally {
    for (const h of helpers) await stopChild(h)
    // Nodes before NATS: a node leaving cleanly deletes its keys there.
    await Promise.all([single, ...nodes].filter((c) => c !== null).map((c) => c.stop(5000)))
    if (nats !== null) await nats.stop()
    for (const db of dbs) await dropDatabase(adminUrl, db.name)
  }
}
