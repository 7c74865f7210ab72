import t from 'tap'
import { LeaseKeeper } from '../../src/cluster/lease-keeper.js'
import { Registry } from '../../src/pool/registry.js'
import { MiB, pollUntil } from '../helpers/cluster-node.js'
import { startLeaseNode } from '../helpers/lease-node.js'
import { captureLogs } from '../helpers/logs.js'
import { startNatsServer } from '../helpers/nats-server.js'

/**
 * Review attack (specs/cluster.md §8): a handover addressed to a session this node has claimed
 * but not yet put in its pool. A tokenless admission claims inside the PostgreSQL lock and awaits
 * its COMMIT before it registers. If another node's claim lands in that gap naming our claimed
 * session as `prev`, the keeper used to find no local session, close nothing and confirm at once:
 * the other node routed, and then our admission registered its session as routable too. Now the
 * keeper marks the claim displaced and does not confirm; admission sees the mark before it
 * registers, gives up, and its release confirms.
 */
t.test('a handover naming a claimed, not yet registered session waits until that claim is given up', async (t) => {
  const nats = await startNatsServer(t, { maxPayload: 8 * MiB })
  const a = await startLeaseNode(t, nats, 'node-a')
  const b = await startLeaseNode(t, nats, 'node-b')
  const registry = new Registry<null>()
  const keeper = new LeaseKeeper(
    a.leases,
    a.node,
    { get: (id) => registry.get(id), close: (id, assigned) => void registry.remove(id, assigned) },
    { changed: () => undefined, claimed: () => undefined },
    captureLogs().logger,
  )
  await keeper.start()
  t.teardown(() => keeper.stop())

  // Node A's admission: the claim is won, the session not yet registered (COMMIT in flight).
  const mine = a.session('sess-a')
  const claimed = await keeper.claim('victim', a.claimant('sess-a', 'self_minted'))
  t.ok(claimed.ok && claimed.action === 'create')
  // Node B's bearer claim lands meanwhile: a handover naming A's claimed session.
  const theirs = await b.leases.claim('victim', b.claimant('sess-b', 'bearer_validated'))
  t.ok(theirs.ok && theirs.lease.state === 'handover' && theirs.lease.prev?.assigned_id === 'sess-a')
  await pollUntil('A sees the handover', () => keeper.displacedBeforeRegistration('victim', 'sess-a'))
  const lease = await b.leases.read('victim')
  t.ok(lease.kind === 'lease' && lease.lease.state === 'handover', 'A did not confirm while its claim could still enter the pool')

  // Admission checks the mark before registering, gives up, and releases: now A confirms.
  const routable = b.leases.awaitRoutable('victim', b.session('sess-b'), { pollMs: 50 })
  keeper.release('victim', mine)
  const r = await routable
  t.ok(r.routable, 'the newcomer routes once the claim was given up')
  t.equal(registry.get('victim'), undefined, 'and A never had the session in its pool')
})
