import t from 'tap'
import { routableOn, startCluster, until, type NodeProc } from '../helpers/cluster-procs.js'
import { TestProvider } from '../helpers/test-provider.js'

/**
 * Review 2 attack on the drain fix (service.ts drainAndStop): it waits for
 * Promise.all([dispatcher.whenIdle(null), remote.whenIdle()]). Each resolves the first time its
 * own side is idle, not when both are idle at once. Here the remote side is idle when the drain
 * starts (resolved at once), a local attempt holds the dispatcher; that provider's socket drops
 * before the first byte and the exchange fails over to a provider on node 2 (a remote attempt,
 * allowed: the node is still live while draining). The dispatcher turns idle, Promise.all
 * resolves, and the drain ends "idle" while the buyer's remote stream is running: cut.
 */

function sse(content: string): string {
  return `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content } }] })}\n\n`
}

t.test('SIGTERM: a failover to another node during the drain is waited for', async (t) => {
  const cluster = await startCluster(t, 2)
  const [n1, n2] = cluster.nodes as [NodeProc, NodeProc]
  const local = await TestProvider.join(n1.wsUrl, 'df-local')
  await routableOn(n1, 'df-local', 'n1')

  const res = fetch(`${n1.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'test-model', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
  }).then(
    (r) => ({ r, err: null }),
    (err: unknown) => ({ r: null, err }),
  )
  await local.request(0) // held: no answer yet

  const remote = await TestProvider.join(n2.wsUrl, 'df-remote')
  t.teardown(() => remote.close())
  await routableOn(n1, 'df-remote', 'n2')
  remote.serve(async (req) => {
    remote.chunk(req.request_id, sse('first'))
    await new Promise((r) => setTimeout(r, 1500))
    remote.chunk(req.request_id, sse('second'))
    remote.chunk(req.request_id, 'data: [DONE]\n\n')
    remote.end(req.request_id)
  })

  n1.child.kill('SIGTERM')
  await n1.event('coordinator.draining')
  // The local provider dies before its first byte: the exchange fails over to node 2.
  local.crash()
  await until('the failover reached node 2', () => remote.requests.length > 0, 5_000).catch(() => t.comment('the failover never reached node 2'))

  let text = ''
  try {
    const { r, err } = await res
    if (r === null) throw err
    t.equal(r.status, 200)
    const reader = r.body!.getReader()
    const dec = new TextDecoder()
    for (let c = await reader.read(); !c.done; c = await reader.read()) text += dec.decode(c.value)
  } catch (err) {
    text += `\n<stream cut: ${String(err)}>`
  }
  const drained = await n1.event('coordinator.drained')
  t.comment(`drain: ${JSON.stringify(drained)}`)
  t.comment(`node 2's provider got ${remote.requests.length} request(s), ${remote.cancels.length} cancel(s): ${JSON.stringify(remote.cancels)}`)
  t.match(text, /"content":"second"/, 'the buyer got the rest of the failed-over stream')
  t.match(text, /data: \[DONE\]\n\n$/, 'and its end')
  t.equal(remote.cancels.length, 0, 'the provider on node 2 was not cancelled by the drain')
})
