import t from 'tap'
import { routableOn, startCluster, until, type NodeProc } from '../helpers/cluster-procs.js'
import { TestProvider } from '../helpers/test-provider.js'

/**
 * Review attack: the owner cancels a remote attempt when its origin incarnation is not live
 * (remote-server.ts #tick, every keepaliveMs = 2 s). cluster-node.ts originLive() reads the
 * owner's *polled* view of pc_nodes, and a node that view does not list yet counts as dead. The
 * poll runs every renewal interval (20 % of COORD_NODE_TTL_MS: 2 s by default, up to 12 s). So a
 * node that just started, or just unfenced under a new incarnation, has its relayed requests
 * cancelled by the owner ('buyer_disconnected' to the provider) until the owner's next poll, while
 * its buyers are still reading. The origin is not even told: the owner sends no 'l', so the
 * origin waits out 3 keepalives of silence before it calls the attempt lost.
 *
 * A long TTL (allowed: 3–60 s) makes the owner's poll slow, so the window is wide. Each trial is
 * counted only if at least one full keepalive interval passed before the owner saw the new node.
 */
function sse(content: string): string {
  return `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content } }] })}\n\n`
}

t.test('a request relayed by a node the owner has not polled yet is not cancelled by the owner', async (t) => {
  const cluster = await startCluster(t, 1, { env: { COORD_NODE_TTL_MS: '60000' } })
  const [n1] = cluster.nodes as [NodeProc]
  const p = await TestProvider.join(n1.wsUrl, 'owner-side')
  t.teardown(() => p.close())
  const running = new Set<string>()
  p.serve(async (req) => {
    running.add(req.request_id)
    for (let i = 0; i < 300 && running.has(req.request_id); i++) {
      p.chunk(req.request_id, sse(`t${i}`))
      await new Promise((r) => setTimeout(r, 100))
    }
  })
  p.client.ws.on('message', (d) => {
    const m = JSON.parse(d.toString()) as { type: string; request_id?: string }
    if (m.type === 'cancel_request' && m.request_id !== undefined) running.delete(m.request_id)
  })

  for (let k = 2; k < 8; k++) {
    const origin = await cluster.start(`n${k}`, { COORD_NODE_TTL_MS: '60000' })
    const sees = async () => ((await n1.poolz()).cluster?.nodes ?? []).some((n) => n.node_id === origin.nodeId)
    await routableOn(origin, 'owner-side', 'n1')
    if (await sees()) {
      origin.child.kill('SIGKILL')
      continue // the owner already polled: nothing to show in this trial
    }
    const ctl = new AbortController()
    const cancelsBefore = p.cancels.length
    const res = await fetch(`${origin.url}/v1/chat/completions`, {
      method: 'POST',
      signal: ctl.signal,
      headers: { 'content-type': 'application/json', 'x-pool-provider': 'owner-side' },
      body: JSON.stringify({ model: 'test-model', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    })
    const reader = res.body!.getReader()
    void (async () => {
      try {
        while (!(await reader.read()).done);
      } catch {
        // aborted below
      }
    })()
    const startedAt = performance.now()
    await until(`n1 polls ${origin.nodeId}`, sees, 20_000)
    const unseenMs = performance.now() - startedAt
    const cancelled = p.cancels.slice(cancelsBefore)
    ctl.abort()
    origin.child.kill('SIGKILL')
    if (unseenMs < 2_100 && cancelled.length === 0) continue // too short a window to tell: try another node
    t.same(
      cancelled.map((c) => c.reason),
      [],
      `the owner left the stream of ${origin.nodeId} alone while its poll did not list it yet (${Math.round(unseenMs)} ms)`,
    )
    return
  }
  t.fail('no trial had a window wide enough')
})
