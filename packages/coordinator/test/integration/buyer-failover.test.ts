import http from 'node:http'
import { cancelRequest, type EndStatus } from '@poolcoord/protocol'
import t, { type Test } from 'tap'
import { apiError, buyer } from '../helpers/buyer.js'
import { startTestService, waitFor, type TestService } from '../helpers/service.js'
import { TOKENS, TestProvider, answer } from '../helpers/test-provider.js'

const messages = [{ role: 'user' as const, content: 'hi' }]

/** Every path must give the slot back: nothing in flight anywhere, on any live session. */
function assertSlotsReleased(t: Test, s: TestService): void {
  t.equal(s.svc.ctx.dispatcher.inFlight, 0, 'no request left in flight')
  for (const session of s.svc.ctx.registry.sessions()) t.equal(session.inFlight, 0, `${session.providerId} has no slot taken`)
}

/** `first` has more free slots, so the spread strategy always tries it first. */
async function pair(s: TestService, opts: { second?: boolean } = {}) {
  const first = await TestProvider.join(s.wsUrl, 'first', { hello: { max_concurrency: 8 } })
  const second = opts.second === false ? null : await TestProvider.join(s.wsUrl, 'second', { handler: answer(), hello: { max_concurrency: 2 } })
  return { first, second }
}

function sse(word: string): string {
  return `data: ${JSON.stringify({ id: 'x', object: 'chat.completion.chunk', created: 1, model: 'test-model', choices: [{ index: 0, delta: { content: word }, finish_reason: null }] })}\n\n`
}

for (const stream of [false, true]) {
  t.test(`failover when the first provider's socket drops before its first chunk (stream: ${stream})`, async (t) => {
    const s = await startTestService(t)
    const { first, second } = await pair(s)
    first.serve(() => first.crash())
    const client = buyer(s.url)
    let content = ''
    let servedBy: string | null
    if (stream) {
      const { data, response } = await client.chat.completions.create({ model: 'test-model', messages, stream: true }).withResponse()
      servedBy = response.headers.get('x-pool-provider')
      for await (const c of data) content += c.choices[0]?.delta.content ?? ''
    } else {
      const { data, response } = await client.chat.completions.create({ model: 'test-model', messages }).withResponse()
      servedBy = response.headers.get('x-pool-provider')
      content = data.choices[0]?.message.content ?? ''
    }
    t.equal(servedBy, 'second')
    t.equal(content, TOKENS.join(''))
    t.equal(first.requests.length, 1)
    t.equal(second?.requests.length, 1)
    t.equal(second?.requests[0]?.request_id, first.requests[0]?.request_id, 'the same request id on both attempts')
    const line = s.logs.events('request.finished')[0]
    t.match(line, { status: 'complete', attempts: 2, failovers: ['disconnect'], provider_id: 'second' })
    await waitFor(() => s.svc.ctx.registry.get('first') === undefined, 'first removed')
    assertSlotsReleased(t, s)
  })
}

t.test('failover on error_queue_full and error_model_not_loaded; the full provider is marked busy', async (t) => {
  for (const status of ['error_queue_full', 'error_model_not_loaded'] as const) {
    const s = await startTestService(t)
    const { first, second } = await pair(s)
    first.serve((req, p) => p.end(req.request_id, status))
    const { response } = await buyer(s.url).chat.completions.create({ model: 'test-model', messages }).withResponse()
    t.equal(response.headers.get('x-pool-provider'), 'second', status)
    t.equal(second?.requests.length, 1)
    const row = (await s.poolz()).pool.find((r) => r.provider_id === 'first')
    t.equal(row?.status, status === 'error_queue_full' ? 'busy' : 'ready', `${status}: status afterwards`)
    assertSlotsReleased(t, s)
  }
})

t.test('only one failover: a second failure answers with the error, a third provider is never tried', async (t) => {
  const s = await startTestService(t)
  const a = await TestProvider.join(s.wsUrl, 'a', { hello: { max_concurrency: 8 } })
  const b = await TestProvider.join(s.wsUrl, 'b', { hello: { max_concurrency: 4 } })
  const c = await TestProvider.join(s.wsUrl, 'c', { handler: answer(), hello: { max_concurrency: 1 } })
  a.serve(() => a.crash())
  b.serve(() => b.crash())
  const err = await apiError(buyer(s.url).chat.completions.create({ model: 'test-model', messages }))
  t.equal(err.status, 502)
  t.equal(err.code, 'provider_error')
  t.equal(err.headers?.get('x-pool-provider'), 'b', 'names the last provider tried')
  t.equal(c.requests.length, 0)
  assertSlotsReleased(t, s)
})

t.test('no failover for a pinned request', async (t) => {
  const s = await startTestService(t)
  const { first, second } = await pair(s)
  first.serve(() => first.crash())
  const err = await apiError(buyer(s.url).chat.completions.create({ model: 'test-model', messages }, { headers: { 'X-Pool-Provider': 'first' } }))
  t.equal(err.status, 502)
  t.equal(err.code, 'provider_error')
  t.equal(second?.requests.length, 0)
  assertSlotsReleased(t, s)
})

t.test('a drop mid-stream ends the SSE stream with an error event and [DONE], with no failover', async (t) => {
  const s = await startTestService(t)
  const { first, second } = await pair(s)
  first.serve((req, p) => {
    p.chunk(req.request_id, sse('partial'))
    // A chunk that ends mid-event: the error event must still be well formed.
    p.chunk(req.request_id, 'data: {"id":"x"')
    setImmediate(() => p.crash())
  })
  const res = await fetch(`${s.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'test-model', messages, stream: true }),
  })
  t.equal(res.status, 200)
  const text = await res.text()
  t.ok(
    text.endsWith(
      'data: {"error":{"message":"the provider failed to complete the request","type":"server_error","code":"provider_error"}}\n\ndata: [DONE]\n\n',
    ),
    'error event then [DONE]',
  )
  t.ok(text.includes('data: {"id":"x"\n\ndata: {"error"'), 'the cut event is terminated before the error event')
  t.equal(second?.requests.length, 0, 'bytes had reached the buyer: no failover')

  // The official client surfaces it as an API error after the tokens it got.
  first.serve(() => undefined)
  const again = await TestProvider.join(s.wsUrl, 'first', { hello: { max_concurrency: 8 } })
  again.serve((req, p) => {
    p.chunk(req.request_id, sse('partial'))
    setImmediate(() => p.crash())
  })
  // Pinned: after its crash above, 'first' is cooling down and would otherwise be ranked last.
  const stream = await buyer(s.url).chat.completions.create({ model: 'test-model', messages, stream: true }, { headers: { 'X-Pool-Provider': 'first' } })
  const got: string[] = []
  const err = await apiError(
    (async () => {
      for await (const c of stream) got.push(c.choices[0]?.delta.content ?? '')
    })(),
  )
  t.same(got, ['partial'])
  t.equal(err.code, 'provider_error')
  await waitFor(() => s.svc.ctx.registry.get('first') === undefined, 'first removed')
  assertSlotsReleased(t, s)
})

t.test('a buyer that aborts gets cancel_request sent to the provider, and the slot back', async (t) => {
  const s = await startTestService(t)
  const p = await TestProvider.join(s.wsUrl, 'slow', { hello: { max_concurrency: 1 } })
  // Streaming: abort after the first token.
  const controller = new AbortController()
  const pending = buyer(s.url).chat.completions.create({ model: 'test-model', messages, stream: true }, { signal: controller.signal })
  const req = await p.request(0)
  p.chunk(req.request_id, sse('first'))
  const stream = await pending
  for await (const c of stream) {
    t.equal(c.choices[0]?.delta.content, 'first')
    controller.abort()
  }
  const cancel = await p.cancel(0)
  t.same(cancel, cancelRequest(req.request_id, 'buyer_disconnected'))
  await waitFor(() => s.svc.ctx.dispatcher.inFlight === 0, 'the slot released')
  assertSlotsReleased(t, s)

  // Non-streaming: abort before anything came back.
  const controller2 = new AbortController()
  const pending2 = buyer(s.url)
    .chat.completions.create({ model: 'test-model', messages }, { signal: controller2.signal })
    .catch((e: unknown) => e)
  const req2 = await p.request(1)
  controller2.abort()
  await pending2
  t.same(await p.cancel(1), cancelRequest(req2.request_id, 'buyer_disconnected'))
  await waitFor(() => s.svc.ctx.dispatcher.inFlight === 0, 'the slot released')
  // A late answer for the cancelled request is ignored, and the provider is usable again.
  p.chunk(req2.request_id, 'late')
  p.end(req2.request_id)
  p.serve(answer())
  const { response } = await buyer(s.url).chat.completions.create({ model: 'test-model', messages }).withResponse()
  t.equal(response.status, 200)
  t.match(
    s.logs.events('request.finished').map((l) => l.status),
    ['buyer_disconnected', 'buyer_disconnected', 'complete'],
  )
  assertSlotsReleased(t, s)
})

t.test('timeouts: no first chunk in time is 504 with a cancel; the request deadline ends a stream cleanly', async (t) => {
  const s = await startTestService(t, { limits: { firstChunkTimeoutMs: 200, requestTimeoutMs: 600 } })
  const p = await TestProvider.join(s.wsUrl, 'mute', { hello: { max_concurrency: 2 } })
  const err = await apiError(buyer(s.url).chat.completions.create({ model: 'test-model', messages, stream: true }))
  t.equal(err.status, 504)
  t.equal(err.code, 'provider_timeout')
  t.equal((await p.cancel(0)).reason, 'timeout')
  assertSlotsReleased(t, s)

  // A stream that starts but never ends runs into the whole-request deadline.
  p.serve((req, prov) => prov.chunk(req.request_id, sse('started')))
  const res = await fetch(`${s.url}/v1/chat/completions`, {
    method: 'POST',
    body: JSON.stringify({ model: 'test-model', messages, stream: true }),
  })
  const text = await res.text()
  t.equal(res.status, 200)
  t.ok(text.endsWith('"code":"provider_timeout"}}\n\ndata: [DONE]\n\n'), 'SSE error event, then [DONE]')
  t.equal((await p.cancel(1)).reason, 'timeout')
  assertSlotsReleased(t, s)
})

t.test('provider error statuses map to buyer errors without failover', async (t) => {
  const cases: Array<[EndStatus, number, string]> = [
    ['error_internal', 502, 'provider_error'],
    ['cancelled', 502, 'provider_error'],
    ['error_context_exceeded', 400, 'context_length_exceeded'],
  ]
  for (const [status, http, code] of cases) {
    const s = await startTestService(t)
    const { first, second } = await pair(s)
    first.serve((req, p) => p.end(req.request_id, status))
    const err = await apiError(buyer(s.url).chat.completions.create({ model: 'test-model', messages }))
    t.equal(err.status, http, status)
    t.equal(err.code, code, status)
    t.equal(second?.requests.length, 0, `${status}: the provider may have done the work, so it is never retried`)
    assertSlotsReleased(t, s)
  }
})

t.test('attack: a provider that fails every request instantly does not take the pool down', async (t) => {
  const s = await startTestService(t)
  // Huge advertised capacity and throughput: without the failure cooldown it wins every
  // selection, because each instant error gives its slot straight back.
  const saboteur = await TestProvider.join(s.wsUrl, 'saboteur', { hello: { max_concurrency: 256, throughput_tps_estimate: 10_000 } })
  saboteur.serve((req, p) => p.end(req.request_id, 'error_internal'))
  const honest = await TestProvider.join(s.wsUrl, 'honest', { handler: answer(), hello: { max_concurrency: 8 } })
  const client = buyer(s.url)
  let served = 0
  for (let i = 0; i < 20; i++) {
    served += await client.chat.completions.create({ model: 'test-model', messages }).then(
      () => 1,
      () => 0,
    )
  }
  t.ok(served >= 19, `${served} of 20 requests served`)
  t.ok(saboteur.requests.length <= 1, `the saboteur got ${saboteur.requests.length} requests`)
  t.equal(honest.requests.length, served)
  const row = (await s.poolz()).pool.find((r) => r.provider_id === 'saboteur')
  t.match(row, { consecutive_failures: saboteur.requests.length, routing_eligible: true }, 'ranked last, not excluded')

  // The queue-full variant: two providers claim a full queue, then at once say they are ready.
  const s2 = await startTestService(t)
  for (const id of ['liar-1', 'liar-2']) {
    const liar = await TestProvider.join(s2.wsUrl, id, { hello: { max_concurrency: 256 } })
    liar.serve((req, p) => {
      p.end(req.request_id, 'error_queue_full')
      p.heartbeat('ready', 256, 256)
    })
  }
  await TestProvider.join(s2.wsUrl, 'honest-2', { handler: answer(), hello: { max_concurrency: 8 } })
  let served2 = 0
  for (let i = 0; i < 20; i++) {
    served2 += await buyer(s2.url)
      .chat.completions.create({ model: 'test-model', messages })
      .then(
        () => 1,
        () => 0,
      )
  }
  // The first request may meet both liars (one failover); after that both are cooling down.
  t.ok(served2 >= 19, `${served2} of 20 served: the liars cool down despite their heartbeats`)
})

t.test('backpressure: a buyer that stops reading fails the request instead of growing a buffer', async (t) => {
  const s = await startTestService(t, { limits: { maxBuyerBacklogBytes: 64 * 1024 } })
  const p = await TestProvider.join(s.wsUrl, 'firehose', { hello: { max_concurrency: 1 } })
  const big = `data: ${'x'.repeat(16 * 1024)}\n\n`
  let sent = 0
  p.serve((req, prov) => {
    // Bounded: far more than loopback socket buffers hold, far less than forever.
    const pump = (): void => {
      if (prov.cancels.length > 0 || sent >= 4000) return
      prov.chunk(req.request_id, big)
      sent++
      setImmediate(pump)
    }
    pump()
  })
  const { port } = new URL(s.url)
  const req = http.request({ host: '127.0.0.1', port, path: '/v1/chat/completions', method: 'POST' })
  req.end(JSON.stringify({ model: 'test-model', messages, stream: true }))
  // Take the response headers, then never read the body.
  const res = await new Promise<http.IncomingMessage>((resolve) => req.on('response', resolve))
  res.pause()
  t.equal(res.statusCode, 200)
  const cancel = await p.cancel(0)
  t.equal(cancel.reason, 'buyer_too_slow')
  t.ok(sent < 4000, `the coordinator gave up after ${sent} chunks`)
  await waitFor(() => s.logs.events('request.finished').length === 1, 'the request log line')
  t.equal(s.logs.events('request.finished')[0]?.status, 'buyer_too_slow')
  res.destroy()
  assertSlotsReleased(t, s)
})

t.test('a non-streaming answer over maxResponseBytes fails with 502 and a cancel', async (t) => {
  const s = await startTestService(t, { limits: { maxResponseBytes: 10_000 } })
  const p = await TestProvider.join(s.wsUrl, 'verbose', { hello: { max_concurrency: 1 } })
  p.serve((req, prov) => {
    for (let i = 0; i < 20; i++) prov.chunk(req.request_id, 'y'.repeat(1000))
  })
  const err = await apiError(buyer(s.url).chat.completions.create({ model: 'test-model', messages }))
  t.equal(err.status, 502)
  t.equal((await p.cancel(0)).reason, 'response_too_large')
  assertSlotsReleased(t, s)
})
