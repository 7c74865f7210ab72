// End to end: the official openai client → coordinator → poolcoord-provider agent → mock
// OpenAI-compatible backend, all real, over real sockets.
import { encode, helloAck, inferenceRequest } from '@poolcoord/protocol'
import t from 'tap'
import { apiError, buyer } from '../helpers/buyer.js'
import { agentConfig, startAgent, startMock, stateDir } from '../helpers/agent.js'
import { OPERATOR_KEY, startTestService, waitFor } from '../helpers/service.js'

const ELEVEN = 'This is a deterministic answer from the poolcoord mock backend.'

t.test('streaming and non-streaming answers, with usage', async (t) => {
  const svc = await startTestService(t)
  const mock = await startMock(t, { models: ['mock-llama', 'mock-mistral'] })
  const a = await startAgent(t, agentConfig({ coordinatorUrl: svc.wsUrl, backendUrl: mock.url, stateDir: await stateDir(t) }))
  await a.admitted(2) // self_minted, then bearer_validated once the token is saved
  const row = (await svc.poolz()).pool[0]!
  t.same(row.models, ['mock-llama', 'mock-mistral'], 'models discovered from the backend')
  t.equal(row.auth_state, 'bearer_validated')

  const client = buyer(svc.url)
  const stream = await client.chat.completions.create({
    model: 'mock-llama',
    stream: true,
    stream_options: { include_usage: true },
    messages: [{ role: 'user', content: 'mock:tokens=11 hello there' }],
  })
  let text = ''
  let usage: unknown = null
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta.content ?? ''
    if (chunk.usage) usage = chunk.usage
  }
  t.equal(text, ELEVEN, 'every token, in order')
  t.same(usage, { prompt_tokens: 3, completion_tokens: 11, total_tokens: 14 })

  const whole = await client.chat.completions.create({ model: 'mock-mistral', messages: [{ role: 'user', content: 'mock:tokens=11' }] })
  t.equal(whole.choices[0]?.message.content, ELEVEN)
  t.same(whole.usage, { prompt_tokens: 1, completion_tokens: 11, total_tokens: 12 })

  await waitFor(() => a.logs.events('agent.request_finished').length === 2, 'both requests logged by the agent')
  const [first, second] = a.logs.events('agent.request_finished')
  t.same(first!.usage, { prompt_tokens: 3, completion_tokens: 11, total_tokens: 14 }, 'usage read from the SSE stream, for the end frame')
  t.same(second!.usage, { prompt_tokens: 1, completion_tokens: 11, total_tokens: 12 })
  t.equal(mock.stats.completed, 2)
})

t.test('a buyer who leaves cancels the backend call', async (t) => {
  const svc = await startTestService(t)
  const mock = await startMock(t)
  const a = await startAgent(t, agentConfig({ coordinatorUrl: svc.wsUrl, backendUrl: mock.url, stateDir: await stateDir(t) }))
  await a.admitted(2)
  const hanging = new Promise((r) => mock.once('hanging', r))
  const ctl = new AbortController()
  const call = buyer(svc.url).chat.completions.create(
    { model: 'mock-llama', stream: true, messages: [{ role: 'user', content: 'mock:hang' }] },
    { signal: ctl.signal },
  )
  call.catch(() => {})
  await hanging
  t.equal(a.agent.session?.inFlight, 1, 'the agent is serving it')
  ctl.abort()
  await waitFor(() => mock.stats.aborted === 1, 'the backend call aborted')
  await waitFor(() => a.agent.session?.inFlight === 0, 'the agent slot freed')
  await waitFor(async () => (await svc.poolz()).pool[0]!.slots_free === 2, 'a heartbeat reports the slot free')
})

t.test('backend failures map to end statuses and buyer errors', async (t) => {
  const svc = await startTestService(t)
  const mock = await startMock(t)
  const a = await startAgent(t, agentConfig({ coordinatorUrl: svc.wsUrl, backendUrl: mock.url, stateDir: await stateDir(t), providerId: 'up' }))
  await a.admitted(2)
  const client = buyer(svc.url)
  const ask = (content: string) => client.chat.completions.create({ model: 'mock-llama', messages: [{ role: 'user', content }] })
  const pinned = (id: string, content: string) =>
    client.chat.completions.create({ model: 'mock-llama', messages: [{ role: 'user', content }] }, { headers: { 'x-pool-provider': id } })

  const busy = await apiError(ask('mock:error=429'))
  t.equal(busy.status, 503, 'backend 429 → error_queue_full → 503')
  t.equal((busy.error as { code?: string }).code, 'provider_unavailable')
  const broken = await apiError(ask('mock:error=500'))
  t.equal(broken.status, 502, 'backend 500 → error_internal → 502')
  t.equal((broken.error as { code?: string }).code, 'provider_error')

  // An agent whose backend is down: connection refused → error_model_not_loaded.
  const down = await startMock(t)
  const downUrl = down.url
  const b = await startAgent(
    t,
    agentConfig({ coordinatorUrl: svc.wsUrl, backendUrl: downUrl, stateDir: await stateDir(t), providerId: 'down', models: ['mock-llama'] }),
  )
  await b.admitted(2)
  await down.close()
  const refused = await apiError(pinned('down', 'hello'))
  t.equal(refused.status, 503, 'connection refused → error_model_not_loaded → 503')
  await waitFor(() => b.logs.events('agent.request_finished').length === 1, 'agent logged it')
  t.equal(b.logs.events('agent.request_finished')[0]!.status, 'error_model_not_loaded')
  t.same(
    a.logs.events('agent.request_finished').map((e) => e.status),
    ['error_queue_full', 'error_internal'],
  )
})

t.test('drain: the request in flight finishes, then the agent reconnects', async (t) => {
  const svc = await startTestService(t)
  const mock = await startMock(t, { latencyMs: 200, tokenRate: 50 })
  const a = await startAgent(t, agentConfig({ coordinatorUrl: svc.wsUrl, backendUrl: mock.url, stateDir: await stateDir(t), providerId: 'drainee' }))
  await a.admitted(2)
  const started = new Promise<void>((r) => {
    const poll = setInterval(() => mock.stats.requests === 1 && (clearInterval(poll), r()), 5)
  })
  const stream = buyer(svc.url).chat.completions.create({ model: 'mock-llama', stream: true, messages: [{ role: 'user', content: 'mock:tokens=11' }] })
  await started
  const res = await fetch(`${svc.url}/admin/providers/drainee/drain`, { method: 'POST', headers: { authorization: `Bearer ${OPERATOR_KEY}` } })
  t.equal(res.status, 202)
  await waitFor(() => a.logs.events('agent.drain_requested').length === 1, 'the agent got drain')
  let text = ''
  for await (const chunk of await stream) text += chunk.choices[0]?.delta.content ?? ''
  t.equal(text, ELEVEN, 'the request in flight completed')
  await a.admitted(3)
  t.equal(a.admissions[2]!.authState, 'bearer_validated', 'back, with its token')
  t.same(
    a.backoffs.map((b) => [b.kind, b.code]),
    [['transient', 1000]],
    'closed with 1000 drained, then a normal backoff',
  )
  await waitFor(async () => (await svc.poolz()).pool[0]?.routing_eligible === true, 'routable again')
})

t.test('agent stop: no new work, the request in flight finishes, then the socket closes', async (t) => {
  const svc = await startTestService(t)
  const mock = await startMock(t, { latencyMs: 200 })
  const a = await startAgent(t, agentConfig({ coordinatorUrl: svc.wsUrl, backendUrl: mock.url, stateDir: await stateDir(t), providerId: 'leaver' }))
  await a.admitted(2)
  const answer = buyer(svc.url).chat.completions.create({ model: 'mock-llama', messages: [{ role: 'user', content: 'mock:tokens=11' }] })
  await waitFor(() => mock.stats.requests === 1, 'the backend has the request')
  const stopped = a.stop()
  await waitFor(async () => (await svc.poolz()).pool[0]?.status === 'draining', 'the heartbeat says draining')
  t.equal((await answer).choices[0]?.message.content, ELEVEN, 'the request in flight completed')
  t.same(await stopped, { reason: 'stopped' })
  await waitFor(async () => (await svc.poolz()).pool.length === 0, 'gone from the pool')
})

t.test('junk from a coordinator is ignored: no crash, no token taken outside a mint, no reconnect loop', async (t) => {
  const { WebSocketServer } = await import('ws')
  const mock = await startMock(t)
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' })
  t.teardown(() => new Promise<void>((r) => wss.close(() => r())))
  await new Promise((r) => wss.once('listening', r))
  const port = (wss.address() as { port: number }).port
  let connections = 0
  const answered = new Promise<Record<string, unknown>>((resolve) => {
    wss.on('connection', (ws) => {
      connections++
      ws.once('message', () => {
        // A bearer ack on a tokenless connect must not hand over a token; then junk frames.
        ws.send(encode(helloAck({ assigned_id: 'x', heartbeat_interval_s: 30, auth_state: 'bearer_validated', assigned_provider_token: 'ab'.repeat(32) })))
        for (const junk of ['null', '[1]', '5', '"s"', '{"type":"inference_request"}', '{"type":"cancel_request"}', '{"type":"mystery"}']) ws.send(junk)
        ws.send(encode(inferenceRequest('req-1', false, JSON.stringify({ model: 'mock-llama', messages: [{ role: 'user', content: 'mock:tokens=3' }] }))))
        ws.on('message', (m) => {
          const frame = JSON.parse(String(m)) as Record<string, unknown>
          if (frame.type === 'inference_response_end') resolve(frame)
        })
      })
    })
  })
  const dir = await stateDir(t)
  const a = await startAgent(t, agentConfig({ coordinatorUrl: `ws://127.0.0.1:${port}/ws/provider`, backendUrl: mock.url, stateDir: dir, providerId: 'junk' }))
  t.match(await answered, { request_id: 'req-1', status: 'complete' }, 'still serving after the junk')
  t.equal(connections, 1, 'one connection: no swap, no reconnect')
  t.same(a.logs.events('agent.token_saved'), [], 'no token taken from a non-mint ack')
})
