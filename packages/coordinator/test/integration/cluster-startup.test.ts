import t from 'tap'
import { buyer } from '../helpers/buyer.js'
import { spawnCoordinator } from '../helpers/child-coordinator.js'
import { createClusterDatabase, routableOn, startCluster, until } from '../helpers/cluster-procs.js'
import { closedPort } from '../helpers/cli.js'
import { startNatsServer } from '../helpers/nats-server.js'
import { TestProvider } from '../helpers/test-provider.js'

/** specs/cluster.md §2: a NATS server that cannot carry the cluster is refused at start, with the fix. */
t.test('start-up refuses a NATS server that cannot carry the cluster', async (t) => {
  const databaseUrl = await createClusterDatabase(t)
  const small = await startNatsServer(t, { maxPayload: 1024 * 1024 })
  const noJs = await startNatsServer(t, { jetstream: false, maxPayload: 8 * 1024 * 1024 })
  const cases: Array<[string, string, number, RegExp]> = [
    ['max_payload 1 MiB', small.url, 2, /accepts messages of at most 1048576 bytes \(max_payload\).*max_payload: 8MB/],
    ['JetStream off', noJs.url, 2, /JetStream is not enabled on the NATS server/],
    ['no NATS server at all', `nats://127.0.0.1:${await closedPort()}`, 1, /no NATS server in COORD_NATS_URL .* answered/],
  ]
  for (const [name, url, code, message] of cases) {
    const c = spawnCoordinator(t, { COORD_NATS_URL: url, DATABASE_URL: databaseUrl, COORD_NODE_ID: 'n1', COORD_LOG_LEVEL: 'info' })
    const { code: exit } = await c.exited
    const line = c.lines.find((l) => l.event === 'coordinator.start_failed')
    t.equal(exit, code, `${name}: exit ${code}`)
    t.match(String(line?.msg), message, name)
    t.notOk(
      c.lines.some((l) => l.event === 'coordinator.started'),
      `${name}: never served`,
    )
  }
})

t.test('views: /poolz, /v1/models and /healthz on any node show the whole cluster', async (t) => {
  const cluster = await startCluster(t, 2)
  const [n1, n2] = cluster.nodes as [(typeof cluster.nodes)[number], (typeof cluster.nodes)[number]]
  const a = await TestProvider.join(n1.wsUrl, 'view-a', { hello: { supported_models: ['model-a', 'shared'], model_id: 'model-a' } })
  const b = await TestProvider.join(n2.wsUrl, 'view-b', { hello: { supported_models: ['model-b', 'shared'], model_id: 'model-b' } })
  t.teardown(() => Promise.all([a.close(), b.close()]))
  for (const n of cluster.nodes) for (const id of ['view-a', 'view-b']) await routableOn(n, id)

  for (const n of cluster.nodes) {
    const poolz = await n.poolz()
    t.same(
      poolz.pool.map((r) => [r.provider_id, r.node_id, r.routing_eligible]),
      [
        ['view-a', 'n1', true],
        ['view-b', 'n2', true],
      ],
      `${n.nodeId}: every provider with the node that holds it`,
    )
    t.equal(poolz.cluster?.node_id, n.nodeId, `${n.nodeId}: the cluster section names the answering node`)
    t.same(
      poolz.cluster?.nodes.map((x) => [x.node_id, x.sessions]),
      [
        ['n1', 1],
        ['n2', 1],
      ],
      `${n.nodeId}: and lists both live nodes`,
    )
    t.notOk(JSON.stringify(poolz).includes(a.ack.assigned_provider_token ?? 'no-token'), 'no token in /poolz')
    const models = await buyer(n.url).models.list()
    t.same(models.data.map((m) => m.id).sort(), ['model-a', 'model-b', 'shared'], `${n.nodeId}: /v1/models counts the whole pool`)
    const health = await n.healthz()
    t.equal(health.status, 200)
    t.match(health.body, { status: 'ok', node_id: n.nodeId, pool: { total: 2, routable: 2 }, cluster: { state: 'live', nats: 'connected', live_nodes: 2 } })
  }
  const metrics = await (await fetch(`${n1.url}/metrics`)).text()
  t.match(metrics, /poolcoord_cluster_node_live 1/)
  t.match(metrics, /poolcoord_cluster_live_nodes 2/)
  t.match(metrics, /poolcoord_cluster_lease_claims_total\{outcome="create"\} 1/)

  // A request through node 2 for node 1's provider is counted on both sides.
  a.serve((req) => {
    a.chunk(req.request_id, JSON.stringify({ id: 'x', object: 'chat.completion', choices: [] }))
    a.end(req.request_id)
  })
  await buyer(n2.url).chat.completions.create({ model: 'model-a', messages: [{ role: 'user', content: 'hi' }] })
  await until('the node-to-node counters', async () => {
    const m2 = await (await fetch(`${n2.url}/metrics`)).text()
    const m1 = await (await fetch(`${n1.url}/metrics`)).text()
    return /poolcoord_cluster_remote_attempts_total\{role="origin",outcome="accepted"\} 1/.test(m2) && /role="owner",outcome="accepted"\} 1/.test(m1)
  })
  t.pass('node 2 counts an accepted remote attempt as origin, node 1 as owner')
})
