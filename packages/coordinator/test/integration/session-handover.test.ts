import type { AuthState } from '@poolcoord/protocol'
import t, { type Test } from 'tap'
import { MiB, TEST_TIMING, pollUntil } from '../helpers/cluster-node.js'
import { ModelNode, startLeaseNode, type ModelSession } from '../helpers/lease-node.js'
import { startNatsServer } from '../helpers/nats-server.js'

const P = 'mac-1'

/**
 * Three model nodes (lease-node.ts) over one private nats-server. `routableCounts` gets, at every
 * instant a session turns routable, how many sessions for its id were routable then, cluster-wide.
 */
async function modelCluster(t: Test): Promise<{ a: ModelNode; b: ModelNode; c: ModelNode; routableCounts: number[] }> {
  const nats = await startNatsServer(t, { maxPayload: 8 * MiB })
  const raw = [await startLeaseNode(t, nats, 'node-a'), await startLeaseNode(t, nats, 'node-b'), await startLeaseNode(t, nats, 'node-c')]
  const routableCounts: number[] = []
  const check = (s: ModelSession): void => {
    routableCounts.push(nodes.flatMap((n) => [...n.sessions]).filter((x) => x.providerId === s.providerId && x.routable).length)
  }
  const nodes = raw.map((n) => new ModelNode(n, check))
  const [a, b, c] = nodes as [ModelNode, ModelNode, ModelNode]
  return { a, b, c, routableCounts }
}

for (const oldAuth of ['self_minted', 'bearer_validated'] as AuthState[]) {
  t.test(`a bearer reconnect on B replaces a ${oldAuth} session on A: A closes 4006 and confirms, and only then does B route`, async (t) => {
    const { a, b, routableCounts } = await modelCluster(t)
    await a.start(t)
    const first = await a.connect(P, 'asg-a', oldAuth)
    t.equal(first.outcome, 'create')
    t.ok(first.session.routable, 'A routes its session')

    const second = await b.connect(P, 'asg-b', 'bearer_validated')
    t.equal(second.outcome, 'replace_with_handover')
    t.ok(second.session.routable, 'B routes once the handover completed')
    t.equal(first.session.closedWith, 4006, 'A closed its socket 4006')
    t.strictSame(routableCounts, [1, 1], 'when each turned routable, it was the only routable session for the id')
    t.match(await b.n.leases.read(P), { kind: 'lease', lease: { ...b.n.session('asg-b'), state: 'active' } }, 'the lease is B, active; no prev')
    t.strictSame(a.errors, [])
  })
}

t.test('a node replacing its own session hands over to itself', async (t) => {
  const { a, routableCounts } = await modelCluster(t)
  await a.start(t)
  const first = await a.connect(P, 'asg-1', 'self_minted')
  const second = await a.connect(P, 'asg-2', 'self_minted')
  t.equal(second.outcome, 'replace_with_handover')
  t.equal(first.session.closedWith, 4006)
  t.ok(second.session.routable)
  t.strictSame(routableCounts, [1, 1])
})

t.test('a watch started after the handover was written still sees it (it replays current leases)', async (t) => {
  const { a, b } = await modelCluster(t)
  const first = await a.connect(P, 'asg-a', 'bearer_validated') // A is not watching yet
  const claim = await b.n.leases.claim(P, b.n.claimant('asg-b', 'bearer_validated'))
  t.match(claim, { ok: true, lease: { state: 'handover' } })
  const waiting = b.n.leases.awaitRoutable(P, b.n.session('asg-b'), { pollMs: 50 })
  await a.start(t) // e.g. A's watch was restarted after a NATS outage
  t.match(await waiting, { routable: true, lease: { state: 'active' } })
  t.equal(first.session.closedWith, 4006)
})

t.test('the old owner crashed mid-handover: B routes only once its incarnation expired, never before its TTL', async (t) => {
  const { a, b } = await modelCluster(t)
  const rawA = a.n
  await a.start(t)
  await b.start(t)
  t.equal((await a.connect(P, 'asg-a', 'bearer_validated')).outcome, 'create')
  // A crashes: its connection goes, with no watch event handled, no confirm and no key deletion.
  await rawA.link.nc.close()
  const lastSent = rawA.node.lastRenewalSentAt as number
  const second = await b.connect(P, 'asg-b', 'bearer_validated')
  const routableAt = performance.now()
  t.equal(second.outcome, 'replace_with_handover')
  t.ok(second.session.routable)
  t.ok(
    routableAt >= lastSent + TEST_TIMING.ttlMs,
    `B routed ${Math.round(routableAt - lastSent)} ms after A's last renewal, not before the TTL (${TEST_TIMING.ttlMs} ms)`,
  )
  t.ok(routableAt >= rawA.node.deadline, 'and so after A fenced itself')
  t.match(await b.n.leases.read(P), { kind: 'lease', lease: { ...b.n.session('asg-b'), state: 'active' } }, 'B wrote the lease active itself')
})

t.test('a storm of reconnects across 3 nodes: never two routable sessions, and it settles on the lease owner', async (t) => {
  const { a, b, c, routableCounts } = await modelCluster(t)
  const nodes = [a, b, c]
  for (const n of nodes) await n.start(t)
  const outcomes: string[] = []
  let k = 0
  for (let wave = 0; wave < 5; wave++) {
    // Four reconnects at once, from every node, mostly bearer, with tokenless ones mixed in.
    const wave_ = Array.from({ length: 4 }, (_, i) => {
      const n = nodes[(wave + i) % 3] as ModelNode
      const auth: AuthState = i === 3 ? 'self_minted' : 'bearer_validated'
      return n.connect(P, `asg-${k++}`, auth).then((r) => outcomes.push(r.outcome))
    })
    await Promise.all(wave_)
  }
  t.ok(routableCounts.length > 0, `${routableCounts.length} sessions turned routable`)
  t.ok(
    routableCounts.every((c) => c === 1),
    'at every instant a session turned routable, it was the only routable one for the id',
  )
  const routable = nodes.flatMap((n) => [...n.sessions]).filter((s) => s.routable)
  t.equal(routable.length, 1, 'one routable session at the end')
  const lease = await a.n.leases.read(P)
  t.match(lease, { kind: 'lease', lease: { node_id: routable[0]?.node, assigned_id: routable[0]?.assignedId, state: 'active' } }, 'and it is the lease owner')
  await pollUntil('no other session left open', () => nodes.every((n) => [...n.sessions].every((s) => s.routable)), 5_000)
  t.strictSame(
    nodes.flatMap((n) => n.errors),
    [],
    'no confirm failed',
  )
  t.comment(`outcomes: ${JSON.stringify(outcomes.reduce<Record<string, number>>((m, o) => ({ ...m, [o]: (m[o] ?? 0) + 1 }), {}))}`)
})
