import t from 'tap'
import { FEATURE_END_DATA, responseEnd } from '@poolcoord/protocol'
import { startTestService } from '../helpers/service.js'
import { buyer } from '../helpers/buyer.js'
import { TestProvider } from '../helpers/test-provider.js'

/**
 * The `end_data` feature (specs/protocol.md §2.2, §4.3): a provider the hello_ack offered it may
 * put an answer's last piece in its end frame. The buyer must get exactly what two frames would
 * have given; a provider that keeps sending two frames is untouched (every other buyer test).
 */
const messages = [{ role: 'user' as const, content: 'One frame, please.' }]
const completion = (content: string) =>
  JSON.stringify({
    id: 'c-1',
    object: 'chat.completion',
    created: 1,
    model: 'test-model',
    choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
  })
const sse = (content: string) =>
  `data: ${JSON.stringify({ id: 'c-1', object: 'chat.completion.chunk', created: 1, model: 'test-model', choices: [{ index: 0, delta: { content } }] })}\n\n`

t.test('hello_ack offers end_data', async (t) => {
  const { wsUrl } = await startTestService(t)
  const p = await TestProvider.join(wsUrl, 'offered')
  t.teardown(() => p.close())
  t.same(p.ack.features, [FEATURE_END_DATA])
})

t.test('a non-streamed answer in one end frame reaches the buyer whole, with its usage', async (t) => {
  const { url, wsUrl, svc } = await startTestService(t)
  const usage = { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 }
  const p = await TestProvider.join(wsUrl, 'one-frame', {
    handler: (req, p) => {
      p.active--
      p.client.send(responseEnd(req.request_id, 'complete', { usage, data: completion('whole') }))
    },
  })
  t.teardown(() => p.close())
  const data = await buyer(url).chat.completions.create({ model: 'test-model', messages })
  t.equal(data.choices[0]?.message.content, 'whole')
  t.equal(svc.ctx.dispatcher.inFlight, 0, 'the end gave the slot back')
})

t.test('chunks, then the last piece in the end frame: joined in order', async (t) => {
  const { url, wsUrl } = await startTestService(t)
  const body = completion('split across frames')
  const p = await TestProvider.join(wsUrl, 'split', {
    handler: (req, p) => {
      p.chunk(req.request_id, body.slice(0, 20))
      p.chunk(req.request_id, body.slice(20, 40))
      p.active--
      p.client.send(responseEnd(req.request_id, 'complete', { data: body.slice(40) }))
    },
  })
  t.teardown(() => p.close())
  const data = await buyer(url).chat.completions.create({ model: 'test-model', messages })
  t.equal(data.choices[0]?.message.content, 'split across frames')
})

t.test('a stream whose last event comes in the end frame: every token, in order, then the stream ends', async (t) => {
  const { url, wsUrl } = await startTestService(t)
  const p = await TestProvider.join(wsUrl, 'stream-end', {
    handler: (req, p) => {
      p.chunk(req.request_id, sse('a'))
      p.chunk(req.request_id, sse('b'))
      p.active--
      p.client.send(responseEnd(req.request_id, 'complete', { data: `${sse('c')}data: [DONE]\n\n` }))
    },
  })
  t.teardown(() => p.close())
  const got: string[] = []
  for await (const chunk of await buyer(url).chat.completions.create({ model: 'test-model', messages, stream: true }))
    got.push(chunk.choices[0]?.delta.content ?? '')
  t.same(got, ['a', 'b', 'c'])
})

t.test('an end with data and a failure status breaks the protocol: 4003 invalid_frame: data, and the request fails over', async (t) => {
  const { url, wsUrl } = await startTestService(t)
  const bad = await TestProvider.join(wsUrl, 'bad-end', {
    hello: { throughput_tps_estimate: 1000 },
    handler: (req, p) => p.client.ws.send(JSON.stringify({ type: 'inference_response_end', request_id: req.request_id, status: 'error_internal', data: 'x' })),
  })
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    bad.client.ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })),
  )
  const good = await TestProvider.join(wsUrl, 'good', {
    hello: { throughput_tps_estimate: 1 },
    handler: (req, p) => {
      p.active--
      p.client.send(responseEnd(req.request_id, 'complete', { data: completion('from the second') }))
    },
  })
  t.teardown(() => Promise.all([bad.close(), good.close()]))
  const data = await buyer(url).chat.completions.create({ model: 'test-model', messages })
  t.same(await closed, { code: 4003, reason: 'invalid_frame: data' })
  t.equal(data.choices[0]?.message.content, 'from the second', 'nothing had reached the buyer: failed over')
})

t.test('the last piece counts against the held-answer limit like any chunk', async (t) => {
  const { url, wsUrl } = await startTestService(t, { limits: { maxResponseBytes: 4096 } })
  const p = await TestProvider.join(wsUrl, 'too-big', {
    handler: (req, p) => {
      p.active--
      p.client.send(responseEnd(req.request_id, 'complete', { data: 'x'.repeat(8192) }))
    },
  })
  t.teardown(() => p.close())
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'test-model', messages }),
  })
  t.equal(res.status, 502, 'the held answer passed maxResponseBytes (buyer-api.md §4: a provider error)')
  t.equal(((await res.json()) as { error: { code: string } }).error.code, 'provider_error')
})
