import t from 'tap'
import { routableOn, startCluster, until, type NodeProc } from '../helpers/cluster-procs.js'
import { TestProvider } from '../helpers/test-provider.js'

/**
 * Review attack: the failure cooldown (pool/provider-health.ts) of a provider on another node.
 * The buyer's node records the failure with ClusterPool.recordOutcome, which writes it into the
 * Registry's per-id history (never applied: the id has no local session) and into the copies of
 * the last rebuild. The next rebuild, at the owner's next snapshot (any frame from any provider
 * on that node changes it), makes fresh copies from the snapshot, whose health fields come from
 * the owner's Registry, where nobody recorded anything (RemoteServer records no outcome). So the
 * cooldown is forgotten within a publish interval, and a provider that fails every request
 * instantly keeps winning selection on every other node: the hazard provider-health.ts exists for.
 */
t.test('a remote provider that failed stays cooling down on the buyer node', async (t) => {
  const cluster = await startCluster(t, 2)
  const [n1, n2] = cluster.nodes as [NodeProc, NodeProc]
  const bad = await TestProvider.join(n2.wsUrl, 'fails-fast', { hello: { model_id: 'm-bad' } })
  t.teardown(() => bad.close())
  bad.serve((req) => bad.end(req.request_id, 'error_internal'))
  await routableOn(n1, 'fails-fast', 'n2')

  // Unpinned, so it counts against the provider's health (failure-policy.ts movesHealth).
  const res = await fetch(`${n1.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'm-bad', messages: [{ role: 'user', content: 'hi' }] }),
  })
  t.equal(res.status, 502, 'the provider failed the request')
  await res.arrayBuffer()

  // Any frame from the provider changes node 2's snapshot; wait until node 1 has applied it.
  bad.heartbeat('ready')
  await until('node 1 saw the heartbeat through node 2’s snapshot', async () => {
    const row = (await n1.poolz()).pool.find((r) => r.provider_id === 'fails-fast')
    return row?.last_heartbeat_at !== null && row?.last_heartbeat_at !== undefined
  })
  const row = (await n1.poolz()).pool.find((r) => r.provider_id === 'fails-fast')
  t.equal(row?.consecutive_failures, 1, `node 1 still counts the failure (it shows ${row?.consecutive_failures})`)
  t.not(row?.cooldown_until, null, 'and its cooldown')
})
