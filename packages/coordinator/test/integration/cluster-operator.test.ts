import t from 'tap'
import { routableOn, startCluster, until, type NodeProc } from '../helpers/cluster-procs.js'
import { OPERATOR_KEY } from '../helpers/service.js'
import { TestProvider } from '../helpers/test-provider.js'

/** specs/cluster.md §8: the admin API of any node acts on a provider wherever its socket is. */
t.test('operator actions reach the node that holds the provider', async (t) => {
  const cluster = await startCluster(t, 3)
  const [n1, n2, n3] = cluster.nodes as [NodeProc, NodeProc, NodeProc]
  const admin = (n: NodeProc, path: string, body: unknown = {}) =>
    fetch(`${n.url}/admin${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${OPERATOR_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    })
  const routable = async (n: NodeProc, id: string) => (await n.poolz()).pool.find((r) => r.provider_id === id)?.routing_eligible === true

  await t.test('a cordon through node 2 takes a provider on node 1 out of every view; an uncordon brings it back', async (t) => {
    const p = await TestProvider.join(n1.wsUrl, 'op-cordon')
    t.teardown(() => p.close())
    for (const n of cluster.nodes) await routableOn(n, 'op-cordon', 'n1')
    t.equal((await admin(n2, '/providers/op-cordon/cordon', { reason: 'maintenance' })).status, 200)
    t.notOk(await routable(n2, 'op-cordon'), 'at once on the node that took it')
    for (const n of cluster.nodes) await until(`cordoned on ${n.nodeId}`, async () => !(await routable(n, 'op-cordon')))
    const pinned = await fetch(`${n3.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-pool-provider': 'op-cordon' },
      body: JSON.stringify({ model: 'test-model', messages: [{ role: 'user', content: 'x' }] }),
    })
    t.equal(pinned.status, 503, 'a request through node 3 is not routed to it')
    t.equal(p.requests.length, 0)
    t.equal((await admin(n3, '/providers/op-cordon/uncordon')).status, 200)
    for (const n of cluster.nodes) await routableOn(n, 'op-cordon', 'n1')
  })

  await t.test('kick and drain through another node', async (t) => {
    const k = await TestProvider.join(n1.wsUrl, 'op-kick')
    const d = await TestProvider.join(n1.wsUrl, 'op-drain')
    t.teardown(() => Promise.all([k.close(), d.close()]))
    for (const n of [n2, n3]) for (const id of ['op-kick', 'op-drain']) await routableOn(n, id, 'n1')
    const kicked = new Promise<number>((resolve) => k.client.ws.once('close', resolve))
    const res = await admin(n2, '/providers/op-kick/kick')
    t.equal(res.status, 200)
    t.match(await res.json(), { provider_id: 'op-kick', action: 'kick', assigned_id: k.ack.assigned_id })
    t.equal(await kicked, 4007, 'the provider on node 1 was kicked (4007)')
    const drained = new Promise<string>((resolve) => d.client.ws.on('message', (m) => JSON.parse(String(m)).type === 'drain' && resolve('drain')))
    const dres = await admin(n3, '/providers/op-drain/drain')
    t.equal(dres.status, 202)
    t.equal(await drained, 'drain', 'the provider on node 1 was told to drain')
    t.equal((await admin(n2, '/providers/nobody/kick')).status, 404, 'an id no node holds is 404')
  })

  await t.test('revoke-and-kick through node 3 closes the provider on node 1', async (t) => {
    const first = await TestProvider.join(n1.wsUrl, 'op-revoke')
    const token = first.ack.assigned_provider_token as string
    await first.close()
    await until('the first session left', async () => !(await n3.poolz()).pool.some((r) => r.provider_id === 'op-revoke'))
    const p = await TestProvider.join(n1.wsUrl, 'op-revoke', { token })
    await routableOn(n3, 'op-revoke', 'n1')
    const closed = new Promise<number>((resolve) => p.client.ws.once('close', resolve))
    const res = await admin(n3, `/tokens/${token.slice(0, 12)}/revoke`, { kick: true })
    t.equal(res.status, 200)
    t.match(await res.json(), { kicked: true })
    t.equal(await closed, 4007)
    for (const n of cluster.nodes) await until(`gone from ${n.nodeId}`, async () => !(await n.poolz()).pool.some((r) => r.provider_id === 'op-revoke'))
  })
})
