import t from 'tap'
import { openDatabase } from '../../src/db/database.js'
import { TokenStore } from '../../src/tokens/token-store.js'
import { buyer } from '../helpers/buyer.js'
import { routableOn, startCluster, until, type NodeProc } from '../helpers/cluster-procs.js'
import { captureLogs } from '../helpers/logs.js'
import { samplePoolz } from '../helpers/poolz-sampler.js'
import { ProviderClient, join, type Outcome } from '../helpers/provider-client.js'
import { TestProvider } from '../helpers/test-provider.js'

/**
 * specs/cluster.md §7 and §12, with three real coordinator processes: one routable session per
 * provider_id cluster-wide, eviction defenses across nodes, and the mint race spread over nodes.
 */
t.test('cross-node invariants', async (t) => {
  const cluster = await startCluster(t, 3)
  const [n1, n2, n3] = cluster.nodes as [NodeProc, NodeProc, NodeProc]
  const db = await openDatabase({ url: cluster.databaseUrl, dataDir: 'memory', log: captureLogs().logger })
  t.teardown(() => db.close())
  const tokens = new TokenStore(db)

  /** A provider with a proven token: minted on `first`, then reconnected with it there. */
  async function bearerProvider(id: string, first: NodeProc): Promise<{ token: string; p: TestProvider }> {
    const minted = await TestProvider.join(first.wsUrl, id)
    const token = minted.ack.assigned_provider_token as string
    await minted.close()
    await until(`${id}'s first session left every view`, async () => {
      for (const n of cluster.nodes) if ((await n.poolz()).pool.some((r) => r.provider_id === id)) return false
      return true
    })
    const p = await TestProvider.join(first.wsUrl, id, { token })
    t.equal(p.ack.auth_state, 'bearer_validated')
    return { token, p }
  }

  await t.test('a bearer reconnect moving from node 1 to node 2: never two routable sessions, node 1 closes 4006', async (t) => {
    const { token, p: old } = await bearerProvider('mover', n1)
    for (const n of cluster.nodes) await routableOn(n, 'mover', 'n1')
    const sampler = samplePoolz(cluster.nodes, 'mover')
    await new Promise((r) => setTimeout(r, 100))
    const closed = new Promise<number>((resolve) => old.client.ws.once('close', (code) => resolve(code)))
    const moved = await TestProvider.join(n2.wsUrl, 'mover', { token })
    t.teardown(() => moved.close())
    t.equal(moved.ack.auth_state, 'bearer_validated')
    t.equal(await closed, 4006, "node 1 closed the old socket with 4006 'replaced'")
    for (const n of cluster.nodes) await routableOn(n, 'mover', 'n2')
    await new Promise((r) => setTimeout(r, 100))
    await sampler.stop()
    const { samples } = sampler
    t.ok(samples.length > 30, `${samples.length} samples of /poolz over the three nodes`)
    const doubles = samples.filter((s) => s.routable.length > 1)
    t.same(doubles, [], 'no /poolz answer ever showed two routable sessions for the id')
    // The owners' own views: node 1's last sight of its session routable was asked for before
    // node 2's first sight of the new one came back, so the two never overlapped.
    const oldSeen = samples.filter((s) => s.node === 'n1' && s.routable.some((r) => r.startsWith('n1/')))
    const newSeen = samples.filter((s) => s.node === 'n2' && s.routable.some((r) => r.startsWith('n2/')))
    t.ok(oldSeen.length > 0 && newSeen.length > 0, 'both sessions were seen routable by their own nodes')
    t.ok(Math.max(...oldSeen.map((s) => s.sentAt)) < Math.min(...newSeen.map((s) => s.receivedAt)), 'node 1 stopped before node 2 started')

    // A late close of the replaced socket (already closed) and a crash of nothing: the new lease stands.
    old.crash()
    await new Promise((r) => setTimeout(r, 300))
    for (const n of cluster.nodes) await routableOn(n, 'mover', 'n2')
    moved.serve((req) => {
      moved.chunk(req.request_id, JSON.stringify({ id: 'x', object: 'chat.completion', choices: [] }))
      moved.end(req.request_id)
    })
    for (const n of cluster.nodes) {
      const res = await buyer(n.url).chat.completions.create(
        { model: 'test-model', messages: [{ role: 'user', content: 'x' }] },
        { headers: { 'x-pool-provider': 'mover' } },
      )
      t.ok(res, `a request through ${n.nodeId} is served by the moved session`)
    }
    t.equal(old.requests.length, 0, 'the old socket got no request')
  })

  await t.test('while the old owner is alive but slow to let go, the newcomer on another node is not routable', async (t) => {
    const { token, p: old } = await bearerProvider('slow-owner', n1)
    for (const n of cluster.nodes) await routableOn(n, 'slow-owner', 'n1')
    // Node 1 stops answering for 1.5 s: well inside its fence deadline (2.8 s after a renewal),
    // so it is live and, as far as anyone can know, still routing its session.
    n1.child.kill('SIGSTOP')
    const pausedAt = performance.now()
    let moved: TestProvider
    try {
      moved = await TestProvider.join(n2.wsUrl, 'slow-owner', { token })
      const seen: string[] = []
      while (performance.now() - pausedAt < 1500) {
        const row = (await n2.poolz()).pool.find((r) => r.provider_id === 'slow-owner' && r.node_id === 'n2')
        seen.push(row === undefined ? 'absent' : row.routing_eligible ? 'routable' : (row.routing_ineligible_reason ?? 'ineligible'))
        await new Promise((r) => setTimeout(r, 20))
      }
      t.ok(seen.length > 20, `${seen.length} samples of node 2 while node 1 was paused`)
      t.same([...new Set(seen)], ['lease_pending'], 'the new session waited for the handover the whole time')
    } finally {
      n1.child.kill('SIGCONT')
    }
    t.teardown(() => moved.close())
    const code = await new Promise<number>((resolve) =>
      old.client.ws.readyState === old.client.ws.CLOSED ? resolve(-1) : old.client.ws.once('close', resolve),
    )
    t.equal(code, 4006, 'node 1 let go once it ran again: 4006')
    for (const n of cluster.nodes) await routableOn(n, 'slow-owner', 'n2')
  })

  await t.test('a tokenless claim on node 2 never displaces a routable bearer session on node 1', async (t) => {
    const { p: victim } = await bearerProvider('victim', n1)
    t.teardown(() => victim.close())
    for (const n of cluster.nodes) await routableOn(n, 'victim', 'n1')
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    victim.serve(async (req) => {
      victim.chunk(
        req.request_id,
        `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: 'a' } }] })}\n\n`,
      )
      await gate
      victim.chunk(req.request_id, 'data: [DONE]\n\n')
      victim.end(req.request_id)
    })
    const stream = await buyer(n3.url).chat.completions.create(
      { model: 'test-model', messages: [{ role: 'user', content: 'x' }], stream: true },
      { headers: { 'x-pool-provider': 'victim' } },
    )
    const it = stream[Symbol.asyncIterator]()
    await it.next()
    // The attack: tokenless hellos for the victim's id, on another node, while its stream runs.
    for (const n of [n2, n3]) {
      const r = await join(n.wsUrl, 'victim')
      t.same(r.close, { code: 4005, reason: 'invalid_token' }, `refused on ${n.nodeId}`)
    }
    release()
    let rest = 0
    for (let r = await it.next(); !r.done; r = await it.next()) rest++
    t.equal(rest, 0, 'the stream ended normally')
    t.equal(victim.requests.length, 1)
    for (const n of cluster.nodes) await routableOn(n, 'victim', 'n1')
    t.equal((await n2.poolz()).pool.filter((r) => r.provider_id === 'victim').length, 1, 'no second session anywhere')
  })

  await t.test('20 tokenless hellos for one new id, spread over 3 nodes: one active token row, one routable session', async (t) => {
    // Five rounds, one id each: 20 connections (7 per node, under the per-address limit of 8
    // pending), all connected first, then every hello sent at once.
    const ids = ['contested-a', 'contested-b', 'contested-c', 'contested-d', 'contested-e']
    const outcomes: Array<{ id: string; o: Outcome }> = []
    for (const id of ids) {
      const clients = await Promise.all(Array.from({ length: 20 }, (_, i) => ProviderClient.connect(cluster.nodes[i % 3]!.wsUrl)))
      t.teardown(() => Promise.all(clients.map((c) => c.close())))
      for (const c of clients) c.hello(id)
      for (const o of await Promise.all(clients.map((c) => c.outcome()))) outcomes.push({ id, o })
    }
    await new Promise((r) => setTimeout(r, 500))
    const active = await tokens.list({ activeOnly: true })
    const views = await Promise.all(cluster.nodes.map((n) => n.poolz()))
    for (const id of ids) {
      const mine: Outcome[] = outcomes.filter((x) => x.id === id).map((x) => x.o)
      const minted = mine.filter((o) => o.ack?.assigned_provider_token !== undefined)
      t.equal(minted.length, 1, `${id}: exactly one connection received a token`)
      const losers = mine.filter((o) => o !== minted[0])
      t.ok(
        losers.every((o) => (o.ack?.auth_state === 'bearerless_duplicate' && o.ack.assigned_provider_token === undefined) || o.close?.code === 4005),
        `${id}: every loser is quarantined or closed 4005`,
      )
      const rows = active.filter((r) => r.providerId === id)
      t.equal(rows.length, 1, `${id}: exactly one active row`)
      t.equal(rows[0]?.tokenPrefix, (minted[0]?.ack?.assigned_provider_token as string | undefined)?.slice(0, 12), `${id}: the active row is the winner's`)
      for (const [i, v] of views.entries()) {
        const routable = v.pool.filter((r) => r.provider_id === id && r.routing_eligible)
        t.equal(routable.length, 1, `${id} on n${i + 1}: exactly one routable session`)
        t.equal(routable[0]?.token_prefix, rows[0]?.tokenPrefix, `${id} on n${i + 1}: the routable session is the winner's`)
      }
    }
  })
})
