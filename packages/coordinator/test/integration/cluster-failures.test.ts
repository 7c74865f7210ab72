import t from 'tap'
import { WebSocket } from 'ws'
import { buyer } from '../helpers/buyer.js'
import { TEST_NODE_TTL_MS, routableOn, startCluster, until, type NodeProc } from '../helpers/cluster-procs.js'
import { join } from '../helpers/provider-client.js'
import { TestProvider } from '../helpers/test-provider.js'

/**
 * specs/cluster.md §13, with real processes: a node killed, a node paused past its deadline, and
 * NATS itself stopped and started again. TTL 4 s: a node fences 2.8 s after its last renewal.
 */

const completion = JSON.stringify({ id: 'x', object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: 'ok' } }] })

function chat(url: string, model: string, opts: { stream?: boolean; pin?: string } = {}): Promise<Response> {
  return fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(opts.pin === undefined ? {} : { 'x-pool-provider': opts.pin }) },
    body: JSON.stringify({ model, stream: opts.stream ?? false, messages: [{ role: 'user', content: 'hi' }] }),
  })
}

async function provenToken(n: NodeProc, id: string): Promise<string> {
  const p = await TestProvider.join(n.wsUrl, id)
  await p.close()
  return p.ack.assigned_provider_token as string
}

t.test('SIGKILL of a node', async (t) => {
  const cluster = await startCluster(t, 3)
  const [n1, n2, n3] = cluster.nodes as [NodeProc, NodeProc, NodeProc]
  // The victim's provider, with a proven token so that it may move at once.
  const token = await provenToken(n3, 'on-dead')
  await until('the first session left', async () => !(await n1.poolz()).pool.some((r) => r.provider_id === 'on-dead'))
  const doomed = await TestProvider.join(n3.wsUrl, 'on-dead', { token, hello: { model_id: 'm-kill' } })
  const survivors = [await TestProvider.join(n1.wsUrl, 'on-n1'), await TestProvider.join(n2.wsUrl, 'on-n2')]
  t.teardown(() => Promise.all([doomed.close(), ...survivors.map((s) => s.close())]))
  for (const s of survivors) s.serve((req) => (s.chunk(req.request_id, completion), s.end(req.request_id)))
  for (const n of cluster.nodes) for (const id of ['on-dead', 'on-n1', 'on-n2']) await routableOn(n, id)

  // In flight on the doomed node's provider, through node 1: a stream past its first byte, and
  // a held request that has not started.
  doomed.serve((req) => {
    if (req.stream)
      doomed.chunk(
        req.request_id,
        `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: 'a' } }] })}\n\n`,
      )
  })
  const streaming = await chat(n1.url, 'm-kill', { stream: true, pin: 'on-dead' })
  const reader = streaming.body!.getReader()
  const first = new TextDecoder().decode((await reader.read()).value)
  t.match(first, /"content":"a"/, 'the stream started')
  const held = chat(n1.url, 'm-kill')
  await doomed.request(1)
  // A second provider for the model, on a survivor, for the held request to fail over to.
  const standby = await TestProvider.join(n2.wsUrl, 'standby', { hello: { model_id: 'm-kill' } })
  t.teardown(() => standby.close())
  standby.serve((req) => (standby.chunk(req.request_id, completion), standby.end(req.request_id)))
  await routableOn(n1, 'standby')

  const killedAt = performance.now()
  n3.child.kill('SIGKILL')
  await n3.exited
  // Until its key expires the others still list its provider; a dispatch to it finds no
  // responder, and NATS says so at once.
  t.ok((await n1.poolz()).pool.find((r) => r.provider_id === 'on-dead')?.routing_eligible, "node 1 still lists the dead node's provider")
  const askedAt = performance.now()
  const fast = await chat(n1.url, 'm-kill', { pin: 'on-dead' })
  t.equal(fast.status, 503, 'a request pinned to it gets 503')
  t.ok(performance.now() - askedAt < 1000, `at once (${Math.round(performance.now() - askedAt)} ms): no responders, not a timeout`)
  t.match(await (await fetch(`${n1.url}/metrics`)).text(), /poolcoord_cluster_remote_attempts_total\{role="origin",outcome="no_responders"\} 1/)
  // The provider sees its socket die and reconnects, through the load balancer, to a live node.
  const moved = await TestProvider.join(n2.wsUrl, 'on-dead', { token, hello: { model_id: 'm-kill' } })
  t.teardown(() => moved.close())
  t.equal(moved.ack.auth_state, 'bearer_validated')
  for (const n of [n1, n2]) await routableOn(n, 'on-dead', 'n2', 3 * TEST_NODE_TTL_MS)
  const routableAfter = performance.now() - killedAt
  t.ok(routableAfter < 2 * TEST_NODE_TTL_MS, `routable again on node 2 ${Math.round(routableAfter)} ms after the kill (TTL ${TEST_NODE_TTL_MS} ms)`)

  let rest = ''
  for (let r = await reader.read(); !r.done; r = await reader.read()) rest += new TextDecoder().decode(r.value)
  t.match(rest, /data: \{"error":\{.*"code":"provider_error"/, 'the stream past its first byte ends with an SSE error')
  t.match(rest, /data: \[DONE\]\n\n$/, 'and [DONE]')
  const heldRes = await held
  t.equal(heldRes.status, 200, 'the held request failed over to a provider on a live node')
  t.equal(standby.requests.length, 1)

  for (const n of [n1, n2]) {
    const poolz = await n.poolz()
    for (const id of ['on-n1', 'on-n2', 'standby', 'on-dead'])
      t.ok(poolz.pool.find((r) => r.provider_id === id)?.routing_eligible, `${n.nodeId}: ${id} routable`)
    t.same(
      poolz.cluster?.nodes.map((x) => x.node_id),
      ['n1', 'n2'],
      `${n.nodeId}: the dead node left the cluster view`,
    )
  }
  for (const s of survivors) t.equal(s.client.ws.readyState, s.client.ws.OPEN, `${s.id} was never disturbed`)
})

t.test('SIGSTOP of a node past its deadline while its provider reconnects elsewhere', async (t) => {
  const cluster = await startCluster(t, 2)
  const [n1, n2] = cluster.nodes as [NodeProc, NodeProc]
  const token = await provenToken(n1, 'paused-owner')
  await until('the first session left', async () => !(await n2.poolz()).pool.some((r) => r.provider_id === 'paused-owner'))
  const old = await TestProvider.join(n1.wsUrl, 'paused-owner', { token })
  await routableOn(n2, 'paused-owner', 'n1')
  const oldClosed = new Promise<number>((resolve) => old.client.ws.once('close', resolve))

  n1.child.kill('SIGSTOP')
  const pausedAt = performance.now()
  let moved: TestProvider | null = null
  let queued: Promise<Response> | null = null
  try {
    moved = await TestProvider.join(n2.wsUrl, 'paused-owner', { token })
    moved.serve((req) => (moved!.chunk(req.request_id, completion), moved!.end(req.request_id)))
    // A buyer request to the paused node: the kernel queues it, and node 1 reads it when resumed.
    queued = chat(n1.url, 'test-model', { pin: 'paused-owner' })
    await routableOn(n2, 'paused-owner', 'n2', 4 * TEST_NODE_TTL_MS)
    const waited = performance.now() - pausedAt
    // Node 2 may route only once node 1's key is gone: never before its fence deadline.
    t.ok(waited >= TEST_NODE_TTL_MS * 0.7 - 100, `node 2 waited ${Math.round(waited)} ms for the paused owner's incarnation to die`)
    // Past the whole TTL before resuming.
    await new Promise((r) => setTimeout(r, Math.max(0, TEST_NODE_TTL_MS + 500 - (performance.now() - pausedAt))))
  } finally {
    n1.child.kill('SIGCONT')
  }
  t.teardown(() => moved?.close())
  t.equal(await oldClosed, 4011, 'resumed, node 1 closed its stale socket with 4011 node_fenced')
  const res = await queued!
  t.ok(res.status === 200 || res.status === 503, `the queued request ended cleanly (${res.status})`)
  t.equal(old.requests.length, 0, 'the paused node routed nothing to its stale socket')
  // Logs are written asynchronously: the line may reach the pipe a moment after the close frame.
  await until('node 1 logged its fence', () => n1.lines.some((l) => l.event === 'cluster.fenced'))
  const fenced = n1.lines.find((l) => l.event === 'cluster.fenced')
  // By its deadline, or, had a renewal answered first, by finding its key expired: either way it fenced before routing anything.
  t.ok(fenced?.reason === 'deadline' || fenced?.reason === 'key_lost', `node 1 logged its fence (${String(fenced?.reason)})`)
  await until('node 1 is live again under a new incarnation', async () => (await n1.healthz()).status === 200)
  // The owner (node 2) serves a relayed request only for an origin incarnation its own view of
  // the nodes lists (remote-server.ts): wait until that view has node 1's new one.
  const incarnation = ((await n1.healthz()).body.cluster as { incarnation: string }).incarnation
  await until(
    "node 2 sees node 1's new incarnation",
    async () => (await n2.poolz()).cluster?.nodes.some((n) => n.node_id === 'n1' && n.incarnation === incarnation) === true,
  )
  await routableOn(n1, 'paused-owner', 'n2')
  const served = await chat(n1.url, 'test-model', { pin: 'paused-owner' })
  t.equal(served.status, 200, `node 1 routes to the provider on node 2 once live again${served.status === 200 ? '' : `: ${await served.text()}`}`)
  t.ok(moved!.requests.length >= 1)
})

t.test('NATS stopped: admissions fail closed, nodes fence; NATS back: recovery without a restart', async (t) => {
  const cluster = await startCluster(t, 2)
  const [n1, n2] = cluster.nodes as [NodeProc, NodeProc]
  const p = await TestProvider.join(n1.wsUrl, 'before-outage')
  await routableOn(n2, 'before-outage', 'n1')
  const closed = new Promise<number>((resolve) => p.client.ws.once('close', resolve))
  const pids = cluster.nodes.map((n) => n.child.pid)

  await cluster.nats.stop()
  const refused = await join(n2.wsUrl, 'during-outage')
  t.same(refused.close, { code: 4005, reason: 'invalid_token' }, 'a new admission fails closed with 4005')
  t.equal(await closed, 4011, 'the fenced node closed its provider socket with 4011')
  for (const n of cluster.nodes) {
    await until(`${n.nodeId} reports fenced`, async () => (await n.healthz()).status === 503)
    const h = await n.healthz()
    t.match(h.body, { status: 'fenced', node_id: n.nodeId, cluster: { state: 'fenced' } }, `${n.nodeId}: /healthz says fenced, 503`)
    t.equal((await chat(n.url, 'test-model')).status, 503, `${n.nodeId}: buyers get 503`)
    const upgrade = await new Promise<number>((resolve, reject) => {
      const ws = new WebSocket(n.wsUrl)
      ws.on('unexpected-response', (_req, res) => (resolve(res.statusCode ?? 0), ws.terminate()))
      ws.on('open', () => (resolve(101), ws.terminate()))
      ws.on('error', reject)
    })
    t.equal(upgrade, 503, `${n.nodeId}: a fenced node refuses provider upgrades with 503, so providers go elsewhere with their ordinary backoff`)
    t.same((await n.poolz()).pool, [], `${n.nodeId}: a fenced node shows no stale rows of the others`)
  }

  await cluster.nats.restart()
  for (const n of cluster.nodes) await until(`${n.nodeId} is live again`, async () => (await n.healthz()).status === 200, 20_000)
  const back = await TestProvider.join(n2.wsUrl, 'after-outage')
  t.teardown(() => back.close())
  back.serve((req) => (back.chunk(req.request_id, completion), back.end(req.request_id)))
  await routableOn(n1, 'after-outage', 'n2')
  const res = await buyer(n1.url).chat.completions.create({ model: 'test-model', messages: [{ role: 'user', content: 'x' }] })
  t.ok(res, 'a buyer on node 1 is served by a provider on node 2')
  t.same(
    cluster.nodes.map((n) => n.child.pid),
    pids,
    'no coordinator was restarted',
  )
  t.ok(
    cluster.nodes.every((n) => n.child.exitCode === null),
    'both still running',
  )
})
