import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import type { FencedEvent, NodeLiveness, UnfencedEvent } from '../../src/cluster/node-liveness.js'
import { encodeNodeRecord, nodeKey } from '../../src/cluster/nodes-bucket.js'
import { MiB, TEST_TIMING, observe, startNode } from '../helpers/cluster-node.js'
import { startNatsServer } from '../helpers/nats-server.js'

const { ttlMs: TTL, marginMs: MARGIN, renewIntervalMs: INTERVAL } = TEST_TIMING

t.test('NATS stopped: the node fences before its key could expire; NATS back: it unfences by itself', async (t) => {
  const nats = await startNatsServer(t, { maxPayload: 8 * MiB })
  const { node, logs } = await startNode(t, nats, 'node-a')
  const firstIncarnation = node.incarnation
  const samples = sampleLiveness(t, node)
  const fenced = nextEvent<FencedEvent>(node, 'fenced', TTL + 5_000)
  await nats.stop()
  const stoppedAt = performance.now()

  const ev = await fenced
  checkFenceTiming(t, ev, stoppedAt)
  t.notOk(node.isLive(), 'not live after the fence')
  t.match(node.health(), { state: 'fenced', fence_reason: 'deadline', nats: 'disconnected' })

  const unfenced = nextEvent<UnfencedEvent>(node, 'unfenced', 20_000)
  await nats.restart()
  const un = await unfenced
  t.ok(node.isLive(), 'live again without any restart of the node')
  t.not(un.incarnation, firstIncarnation, 'under a new incarnation: the old one ended at the fence')
  t.equal(node.incarnation, un.incarnation)
  t.equal((await (await observe(t, nats)).key('node-a'))?.record?.incarnation, un.incarnation, 'which the key now carries')
  t.strictSame(
    samples.filter((s) => s.live && s.at >= ev.deadline && s.at < un.at),
    [],
    `no liveness reading between the deadline and the unfence said live (${samples.length} readings)`,
  )
  t.equal(logs.events('node.fenced').length, 1)
  t.equal(logs.events('node.unfenced').length, 1)
})

t.test('a hung NATS server (SIGSTOP): fenced by the deadline all the same; SIGCONT: back by itself', async (t) => {
  const nats = await startNatsServer(t, { maxPayload: 8 * MiB })
  const { node, logs } = await startNode(t, nats, 'node-a')
  const samples = sampleLiveness(t, node)
  const fenced = nextEvent<FencedEvent>(node, 'fenced', TTL + 5_000)
  nats.pause()
  const pausedAt = performance.now()

  const ev = await fenced
  checkFenceTiming(t, ev, pausedAt)
  const unfenced = nextEvent<UnfencedEvent>(node, 'unfenced', 20_000)
  nats.resume()
  const un = await unfenced
  t.ok(node.isLive())
  t.strictSame(
    samples.filter((s) => s.live && s.at >= ev.deadline && s.at < un.at),
    [],
    'never live between the deadline and the unfence',
  )
  t.equal(logs.events('node.id_conflict').length, 0, 'renewals that the hung server stored late are known as ours, not another process')
  t.ok(logs.events('node.revision_adopted').length >= 1, '(the server stored a renewal queued during the pause, and the node took its revision)')
})

t.test('another process takes the node id over: fenced (conflict), logged once, and back when it goes', async (t) => {
  const nats = await startNatsServer(t, { maxPayload: 8 * MiB })
  const { node, logs } = await startNode(t, nats, 'node-a')
  const obs = await observe(t, nats)
  const fenced = nextEvent<FencedEvent>(node, 'fenced', 5_000)
  const intruder = { v: 1 as const, node_id: 'node-a', incarnation: 'intruder', started_at: new Date().toISOString(), host: 'elsewhere', pid: 4242 }
  await obs.kv.put(nodeKey('node-a'), encodeNodeRecord(intruder))

  const ev = await fenced
  t.equal(ev.reason, 'conflict', 'the renewal found the key held by another incarnation')
  t.notOk(node.isLive())
  // Let a few renewal attempts pass: it must neither overwrite the holder nor repeat the error.
  await sleep(4 * INTERVAL)
  const conflicts = logs.events('node.id_conflict')
  t.equal(conflicts.length, 1, 'logged once per holder, not at every renewal')
  t.match(conflicts[0], { level: 50, node_id: 'node-a', holder: { incarnation: 'intruder', host: 'elsewhere', pid: 4242 } })
  t.equal((await obs.key('node-a'))?.record?.incarnation, 'intruder', 'the holder was never overwritten')
  t.match(node.health(), { state: 'fenced', fence_reason: 'conflict' })

  const unfenced = nextEvent<UnfencedEvent>(node, 'unfenced', 5_000)
  await obs.kv.delete(nodeKey('node-a'))
  const un = await unfenced
  t.ok(node.isLive(), 'the key is free again: the node claims it under a new incarnation')
  t.equal((await obs.key('node-a'))?.record?.incarnation, un.incarnation)
})

t.test('stop() never throws, even with NATS gone', async (t) => {
  const nats = await startNatsServer(t, { maxPayload: 8 * MiB })
  const { node, logs } = await startNode(t, nats, 'node-a')
  await nats.stop()
  await t.resolves(node.stop())
  t.notOk(node.isLive())
  t.equal(logs.events('node.leave_failed').length, 1, 'the failed delete is logged; the key expires by its TTL')
})

/**
 * The safety property, measured against the renewal time the module recorded: the node stopped
 * routing at send time + T - margin, before the server could have expired the key (send time + T).
 */
function checkFenceTiming(t: Test, ev: FencedEvent, outageAt: number): void {
  t.equal(ev.reason, 'deadline')
  const sent = ev.lastRenewalSentAt as number
  t.type(sent, 'number', 'a renewal had succeeded')
  t.ok(sent <= outageAt, 'the last renewal that counted was sent before the outage')
  t.equal(ev.deadline, sent + TTL - MARGIN, 'deadline = send time of the last successful renewal + T - margin')
  t.ok(ev.at >= ev.deadline, 'the fence was noticed at or after the deadline (isLive turned false at the deadline itself)')
  t.ok(ev.at < sent + TTL, `and before T elapsed since that renewal (${Math.round(ev.at - sent)} ms < ${TTL} ms)`)
  t.ok(ev.deadline - outageAt <= TTL - MARGIN, 'no later than T - margin after the outage began')
}

interface Sample {
  at: number
  live: boolean
}

/** Reads isLive() every few ms, as dispatches would, until the test ends. */
function sampleLiveness(t: Test, node: NodeLiveness): Sample[] {
  const samples: Sample[] = []
  const timer = setInterval(() => {
    const at = performance.now()
    samples.push({ at, live: node.isLive(at) })
  }, 5)
  t.teardown(() => clearInterval(timer))
  return samples
}

async function nextEvent<E>(node: NodeLiveness, name: 'fenced' | 'unfenced', timeoutMs: number): Promise<E> {
  const [ev] = (await once(node, name, { signal: AbortSignal.timeout(timeoutMs) })) as [E]
  return ev
}
