import { Kvm } from '@nats-io/kv'
import t from 'tap'
import { NodeLiveness } from '../../src/cluster/node-liveness.js'
import { NODES_BUCKET, encodeNodeRecord, nodeKey } from '../../src/cluster/nodes-bucket.js'
import { ConfigError } from '../../src/errors.js'
import { MiB, TEST_TIMING, connectLink, observe, pollUntil, startNode } from '../helpers/cluster-node.js'
import { captureLogs } from '../helpers/logs.js'
import { startNatsServer } from '../helpers/nats-server.js'

const { ttlMs: TTL, marginMs: MARGIN } = TEST_TIMING

t.test('the key appears with this incarnation, is renewed, and a clean stop deletes it', async (t) => {
  const nats = await startNatsServer(t, { maxPayload: 8 * MiB })
  const { node, link } = await startNode(t, nats, 'node-a')
  const obs = await observe(t, nats)
  const first = await obs.key('node-a')
  t.match(first?.record, { v: 1, node_id: 'node-a', incarnation: node.incarnation, pid: process.pid }, 'the value names node and incarnation')
  const bucket = await link.jsm.streams.info(`KV_${NODES_BUCKET}`)
  t.equal(bucket.config.max_age, TTL * 1e6, 'the bucket was created with TTL T')
  t.equal(bucket.config.max_msgs_per_subject, 1, 'and history 1')
  t.ok(node.isLive())
  t.strictSame(node.health(), {
    node_id: 'node-a',
    incarnation: node.incarnation,
    state: 'live',
    fence_reason: null,
    nats: 'connected',
    live_nodes: node.liveNodes().nodes.size,
  })

  const sentBefore = node.lastRenewalSentAt as number
  await pollUntil('two more renewals', async () => ((await obs.key('node-a'))?.revision ?? 0) >= (first?.revision ?? 0) + 2, 5_000)
  t.ok((node.lastRenewalSentAt as number) > sentBefore, 'the module records each renewal it sent')
  t.equal(node.deadline, (node.lastRenewalSentAt as number) + TTL - MARGIN, 'deadline = last successful send + T - margin')
  t.equal((await obs.key('node-a'))?.record?.incarnation, node.incarnation, 'renewals keep the incarnation')

  await node.stop()
  t.notOk(node.isLive(), 'a stopped node is never live')
  t.equal(node.health().state, 'stopped')
  t.equal(await obs.key('node-a'), null, 'the key is deleted')
  await t.resolves(node.stop(), 'stop() twice is harmless')
})

t.test('liveNodes: the others, a clean leave, and a crash found by polling after the TTL', async (t) => {
  const nats = await startNatsServer(t, { maxPayload: 8 * MiB })
  const a = await startNode(t, nats, 'node-a')
  const b = await startNode(t, nats, 'node-b')
  await pollUntil('a sees both', () => a.node.liveNodes().nodes.size === 2)
  t.equal(a.node.liveNodes().nodes.get('node-b')?.incarnation, b.node.incarnation)
  t.ok((a.node.liveNodes().takenAt as number) <= performance.now())

  await b.node.stop()
  await pollUntil('b gone after its clean leave', () => !a.node.liveNodes().nodes.has('node-b'), 2_000)

  const c = await startNode(t, nats, 'node-c')
  await pollUntil('a sees c', () => a.node.liveNodes().nodes.has('node-c'))
  // A crash: c's connection goes away without deleting the key; only the TTL removes it.
  await c.link.nc.close()
  const lastSent = c.node.lastRenewalSentAt as number
  await pollUntil('c expired from the view', () => !a.node.liveNodes().nodes.has('node-c'), TTL + 3_000)
  const droppedAt = performance.now()
  t.ok(droppedAt >= lastSent + TTL, `the key outlived its last renewal by the whole TTL (${Math.round(droppedAt - lastSent)} ms >= ${TTL} ms)`)
  t.strictSame([...a.node.liveNodes().nodes.keys()], ['node-a'])
})

t.test('a second process with the same node id is refused at start; the running one is untouched', async (t) => {
  const nats = await startNatsServer(t, { maxPayload: 8 * MiB })
  const a = await startNode(t, nats, 'node-a')
  const link = await connectLink(t, nats)
  const started = performance.now()
  const err = await NodeLiveness.start({ link, nodeId: 'node-a', log: captureLogs().logger, timing: TEST_TIMING }).then(
    () => null,
    (e: unknown) => e,
  )
  t.ok(err instanceof ConfigError, 'a ConfigError: exit 2')
  t.match(
    (err as Error).message,
    /^node id node-a is in use by the coordinator on .+ \(pid \d+, since .+\), which keeps renewing it: give each coordinator its own COORD_NODE_ID/,
  )
  t.ok(performance.now() - started < TTL, 'told within a few renewals, without waiting for a TTL')
  t.ok(a.node.isLive())
  t.equal((await (await observe(t, nats)).key('node-a'))?.record?.incarnation, a.node.incarnation)
})

t.test('a restart after a crash waits until the stale key expires, then joins', async (t) => {
  const nats = await startNatsServer(t, { maxPayload: 8 * MiB })
  await startNode(t, nats, 'node-other') // creates the bucket
  const obs = await observe(t, nats)
  const before = performance.now()
  const stale = { v: 1 as const, node_id: 'node-a', incarnation: 'crashed', started_at: new Date().toISOString(), host: 'old', pid: 1 }
  await obs.kv.put(nodeKey('node-a'), encodeNodeRecord(stale))
  const a = await startNode(t, nats, 'node-a')
  t.ok(performance.now() >= before + TTL, 'joined only once the stale key had expired')
  t.equal(a.logs.events('node.waiting_for_key').length, 1, 'and said why it waited')
  t.equal((await obs.key('node-a'))?.record?.incarnation, a.node.incarnation)
  t.ok(a.node.isLive())
})

t.test('an existing bucket must keep keys at least T: shorter or no TTL is refused, longer warns', async (t) => {
  const nats = await startNatsServer(t, { maxPayload: 8 * MiB })
  const link = await connectLink(t, nats)
  const kvm = new Kvm(link.js)
  const cases: Array<[number, RegExp | null]> = [
    [1_000, /keeps keys for 1000 ms; node fencing needs a TTL of at least 4000 ms: remove the bucket/],
    [0, /keeps keys for ever/],
    [2 * TTL, null],
  ]
  for (const [ttl, refused] of cases) {
    const kv = await kvm.create(NODES_BUCKET, { history: 1, ttl })
    const logs = captureLogs()
    const start = NodeLiveness.start({ link, nodeId: 'node-a', log: logs.logger, timing: TEST_TIMING })
    if (refused !== null) {
      await t.rejects(start, refused, `bucket TTL ${ttl}`)
      await t.rejects(start, ConfigError)
    } else {
      const node = await start
      t.ok(node.isLive(), `bucket TTL ${ttl} is accepted`)
      t.equal(logs.events('cluster.bucket_ttl_long').length, 1, 'with a warning')
      await node.stop()
    }
    await kv.destroy()
  }
})
