import t from 'tap'
import { routableOn, startCluster, type NodeProc } from '../helpers/cluster-procs.js'
import { TestProvider } from '../helpers/test-provider.js'

/**
 * Review attack: SIGTERM drain in cluster mode. A buyer on the draining node is streaming from a
 * provider whose socket is on another node (a remote attempt). Single-node semantics
 * (signals.test.ts): an in-flight stream completes before the process exits. Service.drainAndStop
 * waits only for ctx.dispatcher (this node's own sockets), so a remote attempt is not waited for:
 * the drain is "idle" at once and destroy() cuts the buyer's stream.
 */

function sse(content: string): string {
  return `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content } }] })}\n\n`
}

t.test('SIGTERM on the buyer node lets a remote stream finish', async (t) => {
  const cluster = await startCluster(t, 2)
  const [n1, n2] = cluster.nodes as [NodeProc, NodeProc]
  const p = await TestProvider.join(n2.wsUrl, 'drain-remote')
  t.teardown(() => p.close())
  await routableOn(n1, 'drain-remote', 'n2')

  let release!: () => void
  const gate = new Promise<void>((r) => (release = r))
  p.serve(async (req) => {
    p.chunk(req.request_id, sse('first'))
    await gate
    p.chunk(req.request_id, sse('second'))
    p.chunk(req.request_id, 'data: [DONE]\n\n')
    p.end(req.request_id)
  })

  const res = await fetch(`${n1.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-pool-provider': 'drain-remote' },
    body: JSON.stringify({ model: 'test-model', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
  })
  t.equal(res.status, 200)
  const reader = res.body!.getReader()
  const dec = new TextDecoder()
  let text = dec.decode((await reader.read()).value)
  t.match(text, /"content":"first"/, 'the remote stream started')

  n1.child.kill('SIGTERM')
  await n1.event('coordinator.draining')
  // The provider goes on only once node 1 is draining: a correct drain waits for it.
  release()
  try {
    for (let r = await reader.read(); !r.done; r = await reader.read()) text += dec.decode(r.value)
  } catch (err) {
    text += `\n<stream cut: ${String(err)}>`
  }
  const drained = await n1.event('coordinator.drained')
  t.match(text, /"content":"second"/, 'the buyer got the rest of the remote stream')
  t.match(text, /data: \[DONE\]\n\n$/, 'and its end')
  t.equal(p.cancels.length, 0, 'the provider on node 2 was not cancelled by the drain')
  t.equal(drained.outcome, 'idle', 'the drain ended idle, not at its deadline')
  t.same(await n1.exited, { code: 0, signal: null }, 'node 1 exited 0')
})
