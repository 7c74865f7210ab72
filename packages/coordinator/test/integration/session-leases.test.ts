import { once } from 'node:events'
import { Kvm } from '@nats-io/kv'
import type { AuthState } from '@poolcoord/protocol'
import t, { type Test as T } from 'tap'
import { encodeLease, leaseKey, type SessionLease, type SessionRef } from '../../src/cluster/lease-value.js'
import { SessionLeases, type ClaimResult, type LeaseEvent } from '../../src/cluster/session-leases.js'
import { SESSIONS_BUCKET } from '../../src/cluster/sessions-bucket.js'
import { ConfigError, NatsUnavailableError } from '../../src/errors.js'
import { MiB, connectLink, pollUntil } from '../helpers/cluster-node.js'
import { startLeaseNode, type LeaseNode } from '../helpers/lease-node.js'
import { captureLogs } from '../helpers/logs.js'
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js'

const P = 'mac-1'

/** A private nats-server and three live nodes on it, each with its own connection. */
async function cluster(t: T): Promise<{ nats: NatsServer; a: LeaseNode; b: LeaseNode; c: LeaseNode }> {
  const nats = await startNatsServer(t, { maxPayload: 8 * MiB })
  // One after another: nodes starting at the same instant on a fresh server race to create the
  // buckets, and a write right after may find no responder (a start-up race of the node layer).
  const a = await startLeaseNode(t, nats, 'node-a')
  const b = await startLeaseNode(t, nats, 'node-b')
  const c = await startLeaseNode(t, nats, 'node-c')
  return { nats, a, b, c }
}

/** Writes a lease value as it is, past every rule: a dead owner's lease, or junk. */
async function plant(t: T, nats: NatsServer, providerId: string, value: Uint8Array | SessionLease): Promise<number> {
  const kv = await new Kvm((await connectLink(t, nats, 'planter')).js).open(SESSIONS_BUCKET)
  return kv.put(leaseKey(providerId), value instanceof Uint8Array ? value : encodeLease(value))
}

function granted(t: { ok(v: unknown, m: string): void }, r: ClaimResult, what: string): Extract<ClaimResult, { ok: true }> {
  t.ok(r.ok, what)
  if (!r.ok) throw new Error(`${what}: refused ${r.reason}`)
  return r
}

t.test('the bucket: history 1, no TTL, bounded values; a claim on a free id is active at once', async (t) => {
  const { a } = await cluster(t)
  const info = await a.link.jsm.streams.info(`KV_${SESSIONS_BUCKET}`)
  t.equal(info.config.max_age, 0, 'no TTL: leases live as long as their incarnation')
  t.equal(info.config.max_msgs_per_subject, 1, 'history 1')
  t.equal(info.config.max_msg_size, 4096, 'the server refuses oversized values')
  const r = granted(t, await a.leases.claim(P, a.claimant('asg-1', 'self_minted')), 'granted')
  t.equal(r.action, 'create')
  t.match(r.lease, { ...a.session('asg-1'), auth_state: 'self_minted', status: 'ready', state: 'active' })
  t.notOk('prev' in r.lease)
  t.strictSame(await a.leases.read(P), { kind: 'lease', lease: r.lease, revision: r.revision })
})

t.test("an existing pc_sessions bucket with a TTL is refused: it would drop a live owner's lease", async (t) => {
  const nats = await startNatsServer(t, { maxPayload: 8 * MiB })
  const link = await connectLink(t, nats)
  await new Kvm(link.js).create(SESSIONS_BUCKET, { history: 1, ttl: 60_000 })
  const err = await SessionLeases.open({ link, log: captureLogs().logger }).then(
    () => null,
    (e: unknown) => e,
  )
  t.ok(err instanceof ConfigError, 'a ConfigError: exit 2')
  t.match((err as Error).message, /pc_sessions drops keys after 60000 ms; session leases must never expire by TTL/)
})

t.test('20 concurrent claims for one id from 3 nodes: exactly one creates, and no write is lost or doubled', async (t) => {
  const { a, b, c } = await cluster(t)
  const nodes = [a, b, c]
  const claims = Array.from({ length: 20 }, (_, i) => {
    const n = nodes[i % 3] as LeaseNode
    return n.leases.claim(P, n.claimant(`asg-${i}`, 'self_minted')).then((r) => ({ r, who: n.session(`asg-${i}`) }))
  })
  const results = await Promise.all(claims)
  const wins = results.filter((x) => x.r.ok).map((x) => ({ ...(x.r as Extract<ClaimResult, { ok: true }>), who: x.who }))
  const busy = results.filter((x) => !x.r.ok)
  t.equal(wins.filter((w) => w.action === 'create').length, 1, 'exactly one claim found the id free')
  t.ok(
    busy.every((x) => !x.r.ok && x.r.reason === 'busy'),
    'every other outcome is a lost compare-and-set, 3 times in a row',
  )
  const revisions = wins.map((w) => w.revision).sort((x, y) => x - y)
  t.equal(new Set(revisions).size, wins.length, 'every granted claim has its own revision')
  const final = await a.leases.read(P)
  t.equal(final.revision, wins.length, 'the key was written exactly once per granted claim (revisions 1..n)')
  const creator = wins.find((w) => w.action === 'create')!
  t.equal(creator.revision, 1)
  for (const w of wins.filter((w) => w !== creator)) {
    // Nobody confirmed, so the creator is the only session that may be routing: every later claim waits for it.
    t.strictSame(w.lease.prev, creator.who, `revision ${w.revision} hands over from the creator`)
  }
  const last = wins.find((w) => w.revision === final.revision)!
  t.match(final, { kind: 'lease', lease: { ...last.who, state: wins.length > 1 ? 'handover' : 'active' } }, 'the lease is the last granted claim')
  t.comment(`${wins.length} granted, ${busy.length} busy`)
})

t.test('a tokenless claim never displaces a serving bearer lease; once it says it is leaving, it may', async (t) => {
  const { a, b } = await cluster(t)
  const held = granted(t, await a.leases.claim(P, a.claimant('asg-a', 'bearer_validated')), 'bearer on A')
  t.strictSame(await b.leases.claim(P, b.claimant('asg-b', 'self_minted')), { ok: false, reason: 'bearer_downgrade' }, 'refused on B')

  const busy = await a.leases.setStatus(P, a.session('asg-a'), 'busy')
  t.equal(busy?.revision, held.revision, 'busy changes nothing the rule reads: not written')
  t.strictSame(await b.leases.claim(P, b.claimant('asg-b', 'self_minted')), { ok: false, reason: 'bearer_downgrade' }, 'busy is still serving')
  t.equal((await a.leases.read(P)).revision, held.revision, 'the refused claims wrote nothing')

  const draining = await a.leases.setStatus(P, a.session('asg-a'), 'draining')
  t.ok(draining !== null && draining.revision > held.revision && draining.lease.status === 'draining', 'draining is written')
  t.equal(await b.leases.setStatus(P, b.session('asg-b'), 'draining'), null, 'a session the lease does not name cannot write its status')
  const r = granted(t, await b.leases.claim(P, b.claimant('asg-b', 'self_minted')), 'now the tokenless claim is granted')
  t.equal(r.action, 'replace_with_handover')
  t.strictSame(r.lease.prev, a.session('asg-a'), 'and waits for A to let go')
})

t.test('a bearerless_duplicate never displaces any lease', async (t) => {
  const { a, b } = await cluster(t)
  for (const [i, auth] of (['bearer_validated', 'self_minted', 'bearerless_duplicate'] as AuthState[]).entries()) {
    const id = `dup-${i}`
    const held = granted(t, await a.leases.claim(id, a.claimant('asg-a', auth)), `${auth} on A`)
    t.strictSame(await b.leases.claim(id, b.claimant('asg-b', 'bearerless_duplicate')), { ok: false, reason: 'duplicate_never_displaces' }, `not over ${auth}`)
    t.equal((await b.leases.read(id)).revision, held.revision, 'the lease is untouched')
  }
  const alone = granted(
    t,
    await b.leases.claim('dup-free', b.claimant('asg-b', 'bearerless_duplicate')),
    'with no lease, a duplicate holds the id (quarantined, as on one node)',
  )
  t.equal(alone.action, 'create')
})

t.test('a lease whose owner incarnation is dead is taken over at once, by any credential', async (t) => {
  const { nats, a } = await cluster(t)
  const dead = (owner: Omit<SessionRef, 'assigned_id'>): SessionLease => ({
    v: 1,
    ...owner,
    assigned_id: 'asg-old',
    auth_state: 'bearer_validated',
    status: 'ready',
    state: 'active',
  })
  await plant(t, nats, 'gone-node', dead({ node_id: 'node-gone', incarnation: 'inc-gone' }))
  await plant(t, nats, 'restarted', dead({ node_id: 'node-a', incarnation: 'inc-before-restart' }))
  for (const id of ['gone-node', 'restarted']) {
    const r = granted(t, await a.leases.claim(id, a.claimant('asg-new', 'self_minted')), `${id}: a tokenless claim over a dead bearer lease`)
    t.equal(r.action, 'take_over_dead')
    t.equal(r.lease.state, 'active', 'routable at once: a dead incarnation routes nothing')
  }
  const live = granted(t, await a.leases.claim('alive', a.claimant('asg-1', 'bearer_validated')), 'a live bearer lease')
  t.strictSame(await a.leases.claim('alive', a.claimant('asg-2', 'self_minted')), { ok: false, reason: 'bearer_downgrade' }, 'is not taken over')
  t.equal((await a.leases.read('alive')).revision, live.revision)
})

t.test('release: a stale close changes nothing; the owner deletes; a handover is kept for its prev', async (t) => {
  const { a, b } = await cluster(t)
  granted(t, await a.leases.claim(P, a.claimant('asg-1', 'self_minted')), 'first socket on A')
  const second = granted(t, await a.leases.claim(P, a.claimant('asg-2', 'self_minted')), 'its reconnect, on A too')
  t.ok((await a.leases.confirmHandover(P, a.me())) !== null, 'A let go of its first socket')
  const current = await a.leases.read(P)
  t.equal(await a.leases.release(P, a.session('asg-1')), false, 'the first socket closes late: refused')
  t.strictSame(await a.leases.read(P), current, 'the new lease is intact, same revision')
  t.ok(current.revision > second.revision, 'even though the revision the stale socket knew is long gone')

  t.equal(await a.leases.release(P, a.session('asg-2')), true, 'the current socket closes')
  t.equal((await a.leases.read(P)).kind, 'none', 'its lease is deleted')
  t.equal(granted(t, await b.leases.claim(P, b.claimant('asg-b', 'self_minted')), 'free again').action, 'create')

  // B's lease is replaced by A's bearer; A's socket then closes before B let go (nobody confirms here).
  const handover = granted(t, await a.leases.claim(P, a.claimant('asg-3', 'bearer_validated')), 'bearer on A replaces B')
  t.equal(handover.lease.state, 'handover')
  t.equal(await a.leases.release(P, a.session('asg-3')), true)
  const kept = await a.leases.read(P)
  t.match(
    kept,
    { kind: 'lease', lease: { assigned_id: 'asg-3', status: 'unavailable', state: 'handover', prev: b.session('asg-b') } },
    'kept, unavailable, still naming B',
  )
  const next = granted(t, await a.leases.claim(P, a.claimant('asg-4', 'self_minted')), 'a new claim')
  t.strictSame(next.lease.prev, b.session('asg-b'), 'still waits for B, which may be routing: a delete would have let it route at once')
})

t.test('a corrupt lease value refuses every claim and is never written over', async (t) => {
  const { nats, a } = await cluster(t)
  const junk: Record<string, Uint8Array> = {
    'not-json': new TextEncoder().encode('{"node_id":'),
    'wrong-shape': new TextEncoder().encode(JSON.stringify({ v: 1, node_id: 'node-a', state: 'active' })),
    oversized: new TextEncoder().encode(JSON.stringify({ v: 1, pad: 'x'.repeat(2000) })),
  }
  for (const [id, value] of Object.entries(junk)) {
    const revision = await plant(t, nats, id, value)
    for (const auth of ['bearer_validated', 'self_minted', 'bearerless_duplicate'] as AuthState[]) {
      t.strictSame(await a.leases.claim(id, a.claimant('asg-1', auth)), { ok: false, reason: 'lease_unreadable' }, `${id}: ${auth} refused`)
    }
    t.strictSame(await a.leases.read(id), { kind: 'unreadable', revision }, `${id}: untouched`)
    t.equal(await a.leases.release(id, a.session('asg-1')), false, `${id}: nothing to release`)
  }
  t.equal(a.logs.events('cluster.lease_unreadable').length, 9, 'each refusal is logged for the operator')
})

t.test('ids that are not subject tokens work as lease keys, and the watch names them', async (t) => {
  const { a } = await cluster(t)
  const seen: LeaseEvent[] = []
  const watch = await a.leases.watch((e) => seen.push(e))
  t.teardown(() => watch.stop())
  for (const id of ['a..b', '.x', '-']) granted(t, await a.leases.claim(id, a.claimant('asg-1', 'self_minted')), id)
  await pollUntil('three events', () => seen.length >= 3, 5_000)
  t.strictSame(
    seen.map((e) => [e.providerId, e.entry.kind]),
    [
      ['a..b', 'lease'],
      ['.x', 'lease'],
      ['-', 'lease'],
    ],
  )
  t.equal(await a.leases.release('.x', a.session('asg-1')), true)
  await pollUntil('the delete', () => seen.length >= 4, 5_000)
  t.strictSame(seen[3], { providerId: '.x', entry: { kind: 'none', revision: seen[3]!.entry.revision } })
})

t.test('NATS stopped or hung: every operation fails closed, quickly', async (t) => {
  const { nats, a } = await cluster(t)
  const held = a.session('asg-1') // the node unfences under a new incarnation after the outage
  granted(t, await a.leases.claim(P, a.claimant('asg-1', 'bearer_validated')), 'before the outage')

  nats.pause() // hung: the client notices only by its request timeout (2 s here)
  let started = performance.now()
  await t.rejects(a.leases.claim('other', a.claimant('asg-2', 'self_minted')), NatsUnavailableError, 'hung: the claim throws')
  t.ok(performance.now() - started < 3_000, `within the request timeout (${Math.round(performance.now() - started)} ms)`)
  nats.resume()

  const down = once(a.link, 'status')
  await nats.stop()
  t.strictSame(await down, ['disconnected'])
  const ops: Array<[string, () => Promise<unknown>]> = [
    ['claim', () => a.leases.claim(P, a.claimant('asg-3', 'bearer_validated'))],
    ['read', () => a.leases.read(P)],
    ['release', () => a.leases.release(P, held)],
    ['setStatus', () => a.leases.setStatus(P, held, 'draining')],
    ['confirmHandover', () => a.leases.confirmHandover(P, a.me())],
    ['awaitRoutable', () => a.leases.awaitRoutable(P, held)],
    ['watch', () => a.leases.watch(() => undefined)],
  ]
  for (const [name, op] of ops) {
    started = performance.now()
    await t.rejects(op(), NatsUnavailableError, `stopped: ${name} throws`)
    t.ok(performance.now() - started < 100, `${name}: at once, without waiting out a timeout`)
  }

  await nats.restart()
  await pollUntil('reconnected', () => a.link.status === 'connected', 10_000)
  t.match(await a.leases.read(P), { kind: 'lease', lease: held }, 'back: the lease survived (file store), nothing was written while down')
})
