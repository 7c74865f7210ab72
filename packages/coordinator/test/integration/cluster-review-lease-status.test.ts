import { Kvm } from '@nats-io/kv'
import { sql } from 'kysely'
import t from 'tap'
import { openDatabase } from '../../src/db/database.js'
import { leaseKey, parseLease } from '../../src/cluster/lease-value.js'
import { SESSIONS_BUCKET } from '../../src/cluster/sessions-bucket.js'
import { connectLink } from '../helpers/cluster-node.js'
import { routableOn, startCluster, until, type NodeProc } from '../helpers/cluster-procs.js'
import { join } from '../helpers/provider-client.js'
import { captureLogs } from '../helpers/logs.js'
import { TestProvider } from '../helpers/test-provider.js'

/**
 * Review attack: LeaseKeeper.setStatus is fire-and-forget, one read-decide-CAS per heartbeat,
 * with nothing ordering two of them for one session. Two heartbeats close together (draining,
 * then ready again) both read the lease at the same revision; `ready` finds nothing to write
 * (the lease still says ready), `draining` writes. The lease then says `draining` for a session
 * that is `ready`, for good. specs/cluster.md §7.6 says a stale lease status "only makes the rule
 * stricter"; this staleness makes it laxer: a `self_minted` newcomer now displaces a serving
 * bearer session (decideRegistration refuses that with bearer_downgrade on one node).
 */
t.test('a draining→ready flap leaves the lease saying draining, and a weaker credential then displaces a ready bearer', async (t) => {
  const cluster = await startCluster(t, 2)
  const [n1, n2] = cluster.nodes as [NodeProc, NodeProc]
  const link = await connectLink(t, cluster.nats, 'review-observer')
  const kv = await new Kvm(link.js).open(SESSIONS_BUCKET)
  const lease = async (id: string) => {
    const e = await kv.get(leaseKey(id))
    return e === null || e.operation !== 'PUT' ? null : { lease: parseLease(e.value), revision: e.revision }
  }

  // A proven token, then a bearer session on node 1.
  const first = await TestProvider.join(n1.wsUrl, 'flap')
  const token = first.ack.assigned_provider_token as string
  await first.close()
  await until('the first session left', async () => (await lease('flap')) === null)
  const p = await TestProvider.join(n1.wsUrl, 'flap', { token })
  t.equal(p.ack.auth_state, 'bearer_validated')
  await routableOn(n2, 'flap', 'n1')
  const before = await lease('flap')
  t.equal(before?.lease?.status, 'ready')

  // Two heartbeats in one breath: draining, then ready again.
  p.heartbeat('draining')
  p.heartbeat('ready')
  await until('node 1 wrote something for the flap', async () => ((await lease('flap'))?.revision ?? 0) > (before?.revision ?? 0))
  await until('node 1 applied both heartbeats', async () => (await n1.poolz()).pool.find((r) => r.provider_id === 'flap')?.status === 'ready')
  let last: string | undefined
  try {
    await until('the lease says ready again', async () => (last = (await lease('flap'))?.lease?.status) === 'ready', 3_000)
  } catch {
    // reported below
  }
  t.equal(last, 'ready', `the lease follows the session back to ready (it says ${last})`)

  // The consequence. The bearer's token is revoked while its session keeps serving: revoked on the
  // database directly (coordinator-cli with no coordinator answering), which closes nothing; a
  // revocation through a coordinator would close the session too (admission.md §3.2). A tokenless
  // claim can now mint; on one node the ready bearer session refuses it (bearer_downgrade).
  const prefix = token.slice(0, 12)
  const db = await openDatabase({ url: cluster.databaseUrl, dataDir: 'memory', log: captureLogs().logger })
  t.teardown(() => db.close())
  const revoked = await sql`UPDATE provider_tokens SET revoked_at = now() WHERE token_prefix = ${prefix} AND revoked_at IS NULL`.execute(db.kysely)
  t.equal(Number(revoked.numAffectedRows), 1)
  const bearerClosed = new Promise<number>((resolve) => p.client.ws.once('close', resolve))
  const intruder = await join(n2.wsUrl, 'flap')
  t.teardown(() => intruder.client.close())
  t.equal(intruder.ack, undefined, 'a tokenless claim does not displace a ready bearer session')
  t.same(intruder.close, { code: 4005, reason: 'invalid_token' }, 'it is refused 4005, as on one node')
  if (intruder.ack !== undefined) {
    // What happened instead: node 1 let the bearer go for the intruder's handover.
    t.fail(`the serving bearer session on node 1 was closed ${await bearerClosed} by the intruder's handover`)
    await routableOn(n1, 'flap', 'n2')
    t.fail('the self-minted intruder on node 2 is now the routable session for flap')
  } else t.equal(p.client.ws.readyState, p.client.ws.OPEN, 'the serving bearer session stays up')
  await p.close()
})
