import { rmSync } from 'node:fs'
import t from 'tap'
import { startCluster, until, type NodeProc } from '../helpers/cluster-procs.js'
import { TestProvider } from '../helpers/test-provider.js'

/**
 * Review attack: NATS comes back without its JetStream store (a server replaced, a container
 * recreated without its volume, a store lost with a quorum). pc_pool is recreated on reconnect
 * (ClusterPool.resync), but pc_nodes and pc_sessions are opened only at start-up: every renewal
 * now fails (no stream answers the KV subject), so each node stays fenced for good, and every
 * lease operation fails, so no admission can succeed. docs/operations.md "When NATS goes away"
 * promises that no restart is needed.
 */
t.test('NATS restarted with an empty store: the nodes recover without a restart', async (t) => {
  const cluster = await startCluster(t, 2)
  const [n1, n2] = cluster.nodes as [NodeProc, NodeProc]

  await cluster.nats.stop()
  rmSync(cluster.nats.storeDir, { recursive: true, force: true })
  for (const n of cluster.nodes) await until(`${n.nodeId} fenced`, async () => (await n.healthz()).status === 503)
  await cluster.nats.restart()

  let recovered = true
  try {
    for (const n of cluster.nodes) await until(`${n.nodeId} is live again`, async () => (await n.healthz()).status === 200, 20_000)
  } catch {
    recovered = false
  }
  t.ok(recovered, 'both nodes are live again')
  const h = await n1.healthz()
  t.match(h.body, { cluster: { state: 'live' } }, `node 1 reports ${JSON.stringify(h.body.cluster)}`)
  if (recovered) {
    const p = await TestProvider.join(n2.wsUrl, 'after-store-loss').catch((err: unknown) => String(err))
    t.type(p, TestProvider, `a provider is admitted again (${typeof p === 'string' ? p : 'ok'})`)
    if (p instanceof TestProvider) await p.close()
  }
})
