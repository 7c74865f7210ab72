import t from 'tap'
import { openDatabase } from '../../src/db/database.js'
import { TokenStore } from '../../src/tokens/token-store.js'
import { routableOn, startCluster, until, type NodeProc } from '../helpers/cluster-procs.js'
import { generateIdentityKey, keyJoin } from '../helpers/key-client.js'
import { captureLogs } from '../helpers/logs.js'
import { join } from '../helpers/provider-client.js'
import { OPERATOR_KEY } from '../helpers/service.js'

/** Identity v2 across real coordinator processes (specs/admission.md §6, specs/cluster.md §7). */
t.test('identity v2 across nodes', async (t) => {
  const cluster = await startCluster(t, 2)
  const [n1, n2] = cluster.nodes as [NodeProc, NodeProc]
  const db = await openDatabase({ url: cluster.databaseUrl, dataDir: 'memory', log: captureLogs().logger })
  t.teardown(() => db.close())
  const tokens = new TokenStore(db)
  const activeTokens = async (id: string) => (await tokens.list({ activeOnly: true })).filter((r) => r.providerId === id && r.graceUntil === null).length

  await t.test('a recovery on node 2 replaces the live session on node 1', async (t) => {
    const key = generateIdentityKey()
    const first = await keyJoin(n1.wsUrl, 'mover', key, { intent: 'enroll' })
    t.equal(first.ack?.auth_state, 'key_proven')
    const lost = first.ack?.assigned_provider_token as string
    for (const n of cluster.nodes) await routableOn(n, 'mover', 'n1')
    // The provider lost its token and reconnects, through the load balancer, to node 2.
    const second = await keyJoin(n2.wsUrl, 'mover', key, { intent: 'recover' })
    t.equal(second.ack?.auth_state, 'key_proven')
    t.same(await first.client.closed, { code: 4006, reason: 'replaced' }, 'node 1 let its session go')
    for (const n of cluster.nodes) await routableOn(n, 'mover', 'n2')
    t.equal(await activeTokens('mover'), 1, 'one active token: the recovered one')
    t.same((await join(n1.wsUrl, 'mover', { token: lost })).close, { code: 4005, reason: 'invalid_token' }, 'the lost token is revoked cluster-wide')
    await second.client.close()
  })

  await t.test('a tokenless v1 claim on node 2 cannot take a key-pinned id live on node 1', async (t) => {
    const key = generateIdentityKey()
    const victim = await keyJoin(n1.wsUrl, 'victim', key, { intent: 'enroll' })
    t.equal(victim.ack?.auth_state, 'key_proven')
    await routableOn(n2, 'victim', 'n1')
    const claim = await join(n2.wsUrl, 'victim')
    t.same(claim.close, { code: 4005, reason: 'invalid_token' })
    const thief = await keyJoin(n2.wsUrl, 'victim', generateIdentityKey(), { intent: 'recover' })
    t.same(thief.close, { code: 4005, reason: 'invalid_token' })
    await routableOn(n2, 'victim', 'n1')
    t.equal(await activeTokens('victim'), 1)
    await victim.client.close()
  })

  await t.test('simultaneous recoveries on two nodes leave one active token and one session', async (t) => {
    const key = generateIdentityKey()
    const e = await keyJoin(n1.wsUrl, 'twin', key, { intent: 'enroll' })
    await e.client.close()
    await until('twin gone', async () => !(await n2.poolz()).pool.some((r) => r.provider_id === 'twin'))
    const [a, b] = await Promise.all([keyJoin(n1.wsUrl, 'twin', key, { intent: 'recover' }), keyJoin(n2.wsUrl, 'twin', key, { intent: 'recover' })])
    t.ok(a.ack !== undefined || b.ack !== undefined)
    t.equal(await activeTokens('twin'), 1)
    await until('one twin session cluster-wide', async () => (await n1.poolz()).pool.filter((r) => r.provider_id === 'twin').length === 1)
    for (const c of [a, b]) if (c.ack !== undefined) c.client.ws.terminate()
  })

  await t.test('revoking a token through node 2 closes the session it admitted on node 1 within a second', async (t) => {
    const minted = await join(n1.wsUrl, 'leaky')
    const token = minted.ack?.assigned_provider_token as string
    await minted.client.close()
    await until('leaky gone', async () => !(await n2.poolz()).pool.some((r) => r.provider_id === 'leaky'))
    const p = await join(n1.wsUrl, 'leaky', { token })
    t.equal(p.ack?.auth_state, 'bearer_validated')
    await routableOn(n2, 'leaky', 'n1')
    const started = performance.now()
    const res = await fetch(`${n2.url}/admin/tokens/${token.slice(0, 12)}/revoke`, {
      method: 'POST',
      headers: { authorization: `Bearer ${OPERATOR_KEY}`, 'content-type': 'application/json' },
      body: '{}',
    })
    t.match(await res.json(), { provider_id: 'leaky', revoked: true, kicked: true })
    t.same(await p.client.closed, { code: 4007, reason: 'kicked' })
    t.ok(performance.now() - started < 1000, `closed ${Math.round(performance.now() - started)} ms after the request to the other node`)
  })

  await t.test('revoke-identity through node 2 closes the key-proven session on node 1 within a second, and its reconnect is refused', async (t) => {
    const key = generateIdentityKey()
    const p = await keyJoin(n1.wsUrl, 'blocked', key, { intent: 'enroll' })
    t.equal(p.ack?.auth_state, 'key_proven')
    for (const n of cluster.nodes) await routableOn(n, 'blocked', 'n1')
    const started = performance.now()
    const res = await fetch(`${n2.url}/admin/identities/blocked/revoke`, {
      method: 'POST',
      headers: { authorization: `Bearer ${OPERATOR_KEY}`, 'content-type': 'application/json' },
      body: '{}',
    })
    t.match(await res.json(), { provider_id: 'blocked', action: 'revoked', revoked_tokens: 1, kicked: true })
    t.same(await p.client.closed, { code: 4007, reason: 'kicked' })
    t.ok(performance.now() - started < 1000, `closed ${Math.round(performance.now() - started)} ms after the request to the other node`)
    for (const n of cluster.nodes) await until(`gone from ${n.nodeId}`, async () => !(await n.poolz()).pool.some((r) => r.provider_id === 'blocked'))
    const again = await keyJoin(n1.wsUrl, 'blocked', key, { intent: 'recover' })
    t.equal(again.close?.code, 4005, 'the blocked id cannot come back on the node that held it')
  })
})
