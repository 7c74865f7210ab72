import http from 'node:http'
import t from 'tap'
import { buyer } from '../helpers/buyer.js'
import { routableOn, startCluster, until } from '../helpers/cluster-procs.js'
import { TestProvider } from '../helpers/test-provider.js'

/**
 * specs/cluster.md §10, with real processes: three coordinators on one NATS and one PostgreSQL.
 * The buyer (the official openai client) talks to one node; the provider's socket is on another.
 */
t.test('remote attempts across real coordinator processes', async (t) => {
  const cluster = await startCluster(t, 3)
  const [n1, n2, n3] = cluster.nodes as [(typeof cluster.nodes)[number], (typeof cluster.nodes)[number], (typeof cluster.nodes)[number]]

  await t.test('a buyer on node 1 streams from a provider on node 2: chunks arrive in order, before the provider ends', async (t) => {
    const p = await TestProvider.join(n2.wsUrl, 'remote-stream')
    t.teardown(() => p.close())
    await routableOn(n1, 'remote-stream', 'n2')
    const arrivals: string[] = []
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    p.serve(async (req) => {
      for (let i = 0; i < 5; i++) p.chunk(req.request_id, sse(`tok${i}`))
      // Hold the end back until the buyer has seen every chunk: chunks are relayed as they come.
      await gate
      p.chunk(req.request_id, 'data: [DONE]\n\n')
      p.end(req.request_id)
    })
    const stream = await buyer(n1.url).chat.completions.create({ model: 'test-model', messages: [{ role: 'user', content: 'hi' }], stream: true })
    for await (const chunk of stream) {
      arrivals.push(chunk.choices[0]?.delta.content ?? '')
      if (arrivals.length === 5) release()
    }
    t.same(arrivals, ['tok0', 'tok1', 'tok2', 'tok3', 'tok4'], 'every chunk, in order, before the end was sent')
    await until('the slot comes back on node 1 and node 2', async () => {
      for (const n of [n1, n2]) if ((await n.poolz()).pool.find((r) => r.provider_id === 'remote-stream')?.in_flight !== 0) return false
      return true
    })
  })

  await t.test('a buyer abort on node 1 reaches node 2 as cancel_request, and the slot comes back once', async (t) => {
    const p = await TestProvider.join(n2.wsUrl, 'remote-cancel')
    t.teardown(() => p.close())
    await routableOn(n1, 'remote-cancel', 'n2')
    p.serve((req) => p.chunk(req.request_id, sse('first')))
    const ctl = new AbortController()
    const stream = await buyer(n1.url).chat.completions.create(
      { model: 'test-model', messages: [{ role: 'user', content: 'hi' }], stream: true },
      { signal: ctl.signal, headers: { 'x-pool-provider': 'remote-cancel' } },
    )
    const it = stream[Symbol.asyncIterator]()
    await it.next()
    const abortedAt = performance.now()
    ctl.abort()
    const cancel = await p.cancel(0)
    t.equal(cancel.reason, 'buyer_disconnected')
    t.equal(cancel.request_id, (await p.request(0)).request_id)
    t.ok(performance.now() - abortedAt < 1000, `cancel reached node 2's socket in ${Math.round(performance.now() - abortedAt)} ms`)
    await until('the slot is back on node 2', async () => (await n2.poolz()).pool.find((r) => r.provider_id === 'remote-cancel')?.in_flight === 0)
    t.equal(p.cancels.length, 1, 'one cancel, not one per node')
  })

  await t.test('a 1 MiB request body arrives byte-exact across nodes', async (t) => {
    const p = await TestProvider.join(n3.wsUrl, 'remote-big')
    t.teardown(() => p.close())
    await routableOn(n1, 'remote-big', 'n3')
    p.serve((req) => {
      p.chunk(req.request_id, JSON.stringify({ id: 'x', object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: 'ok' } }] }))
      p.end(req.request_id)
    })
    // Printable ASCII, escapes and multi-byte characters, filling the 1 MiB body limit to within 256 bytes.
    let pattern = ''
    for (let i = 0; i < 95; i++) pattern += String.fromCodePoint(32 + i, 0xe9, 0x4e2d, 0x1f600, 10, 34, 92)
    const perPattern = Buffer.byteLength(JSON.stringify(pattern)) - 2
    const room = 1024 * 1024 - 256 - Buffer.byteLength(JSON.stringify({ model: 'test-model', messages: [{ role: 'user', content: '' }] }))
    const content = pattern.repeat(Math.floor(room / perPattern))
    t.ok(
      Buffer.byteLength(JSON.stringify({ model: 'test-model', messages: [{ role: 'user', content }] })) > 1024 * 1024 - 4096,
      'the body is within 4 KiB of 1 MiB',
    )
    const res = await fetch(`${n1.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-pool-provider': 'remote-big' },
      body: JSON.stringify({ model: 'test-model', messages: [{ role: 'user', content }] }),
    })
    t.equal(res.status, 200)
    const got = JSON.parse((await p.request(0)).body) as { messages: Array<{ content: string }> }
    t.ok(got.messages[0]?.content === content, `the provider on node 3 got the ${Buffer.byteLength(content)}-byte content unchanged`)
  })

  await t.test('three nodes dispatching at once never exceed max_concurrency', async (t) => {
    const p = await TestProvider.join(n2.wsUrl, 'remote-max', { hello: { max_concurrency: 2 } })
    t.teardown(() => p.close())
    for (const n of cluster.nodes) await routableOn(n, 'remote-max', 'n2')
    p.serve(async (req) => {
      await new Promise((r) => setTimeout(r, 150))
      p.chunk(req.request_id, JSON.stringify({ id: 'x', object: 'chat.completion', choices: [] }))
      p.end(req.request_id)
    })
    const statuses = await Promise.all(
      Array.from({ length: 24 }, (_, i) =>
        fetch(`${cluster.nodes[i % 3]!.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-pool-provider': 'remote-max' },
          body: JSON.stringify({ model: 'test-model', messages: [{ role: 'user', content: `${i}` }] }),
        }).then((r) => r.status),
      ),
    )
    t.ok(p.maxActive <= 2, `the provider never held more than 2 at once (held at most ${p.maxActive})`)
    t.ok(p.maxActive === 2, 'and the load did reach it')
    t.ok(statuses.includes(200), 'some requests were served')
    t.ok(
      statuses.every((s) => s === 200 || s === 503),
      `the rest were turned away with 503, never an error: ${[...new Set(statuses)].join(',')}`,
    )
  })
})

t.test('across nodes, the slow-buyer limit and the first-chunk deadline act as on one node', async (t) => {
  const cluster = await startCluster(t, 2, { env: { COORD_FIRST_CHUNK_TIMEOUT_S: '1' } })
  const [n1, n2] = cluster.nodes as [(typeof cluster.nodes)[number], (typeof cluster.nodes)[number]]

  await t.test('a buyer on node 1 that stops reading: cancel(buyer_too_slow) on node 2, and another stream on the provider goes on', async (t) => {
    const p = await TestProvider.join(n2.wsUrl, 'firehose', { hello: { max_concurrency: 2 } })
    t.teardown(() => p.close())
    await routableOn(n1, 'firehose', 'n2')
    const big = `data: ${'x'.repeat(16 * 1024)}\n\n`
    let pumped = 0
    let slowId: string | null = null
    p.serve((req, prov) => {
      if (slowId === null) {
        slowId = req.request_id
        // Bounded: far more than the 1 MiB unread limit plus socket buffers, far less than forever.
        const pump = (): void => {
          if (prov.cancels.length > 0 || pumped >= 4000) return
          prov.chunk(req.request_id, big)
          pumped++
          setImmediate(pump)
        }
        return pump()
      }
      // The second, well-behaved stream: a few chunks, then its end.
      for (let i = 0; i < 5; i++) prov.chunk(req.request_id, sse(`ok${i}`))
      prov.chunk(req.request_id, 'data: [DONE]\n\n')
      prov.end(req.request_id)
    })
    const { port } = new URL(n1.url)
    const req = http.request({ host: '127.0.0.1', port, path: '/v1/chat/completions', method: 'POST', headers: { 'x-pool-provider': 'firehose' } })
    req.end(JSON.stringify({ model: 'test-model', messages: [{ role: 'user', content: 'x' }], stream: true }))
    const res = await new Promise<http.IncomingMessage>((resolve) => req.on('response', resolve))
    res.pause()
    t.equal(res.statusCode, 200)
    const cancel = await p.cancel(0)
    t.equal(cancel.reason, 'buyer_too_slow', 'node 2 was told to stop the slow stream')
    t.equal(cancel.request_id, slowId)
    t.ok(pumped < 4000, `node 1 gave up after ${pumped} chunks of 16 KiB`)
    const stream = await buyer(n1.url).chat.completions.create(
      { model: 'test-model', messages: [{ role: 'user', content: 'y' }], stream: true },
      { headers: { 'x-pool-provider': 'firehose' } },
    )
    const got: string[] = []
    for await (const c of stream) got.push(c.choices[0]?.delta.content ?? '')
    t.same(got, ['ok0', 'ok1', 'ok2', 'ok3', 'ok4'], 'a second stream on the same provider completes')
    req.destroy()
  })

  await t.test('a provider on node 2 that never answers: 504 on node 1 after the first-chunk deadline, and cancel(timeout) on node 2', async (t) => {
    const p = await TestProvider.join(n2.wsUrl, 'silent')
    t.teardown(() => p.close())
    await routableOn(n1, 'silent', 'n2')
    const startedAt = performance.now()
    const res = await fetch(`${n1.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-pool-provider': 'silent' },
      body: JSON.stringify({ model: 'test-model', messages: [{ role: 'user', content: 'x' }], stream: true }),
    })
    t.equal(res.status, 504)
    t.match(await res.json(), { error: { code: 'provider_timeout' } })
    t.ok(performance.now() - startedAt >= 1000, 'after the 1 s first-chunk deadline')
    const cancel = await p.cancel(0)
    t.equal(cancel.reason, 'timeout')
  })
})

function sse(content: string): string {
  return `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content } }] })}\n\n`
}
