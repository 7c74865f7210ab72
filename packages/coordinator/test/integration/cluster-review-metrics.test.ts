import t from 'tap'
import { routableOn, startCluster, type NodeProc } from '../helpers/cluster-procs.js'
import { TestProvider } from '../helpers/test-provider.js'
import { OPERATOR_KEY } from '../helpers/service.js'

/**
 * Review attack: poolcoord_pool_sessions says "sessions on this node (in cluster mode: the
 * sockets this node holds)", but context.ts feeds it cluster.pool.liveSessions(), the whole
 * cluster's view. Summed over nodes (what every dashboard does) the pool is counted N times.
 */
t.test('poolcoord_pool_sessions counts only the sockets this node holds', async (t) => {
  const cluster = await startCluster(t, 2)
  const [n1, n2] = cluster.nodes as [NodeProc, NodeProc]
  const p = await TestProvider.join(n2.wsUrl, 'metrics-remote')
  t.teardown(() => p.close())
  await routableOn(n1, 'metrics-remote', 'n2')

  const sessions = async (n: NodeProc): Promise<number> => {
    const text = await (await fetch(`${n.url}/metrics`, { headers: { authorization: `Bearer ${OPERATOR_KEY}` } })).text()
    let sum = 0
    for (const line of text.split('\n')) if (line.startsWith('poolcoord_pool_sessions{')) sum += Number(line.split(' ').at(-1))
    return sum
  }
  t.equal(await sessions(n2), 1, 'node 2 holds the socket')
  t.equal(await sessions(n1), 0, 'node 1 holds no socket, so it reports none')
})
