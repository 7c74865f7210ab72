// The agent's node:http client against real servers: every row of the outcome table in
// backend-client.ts, the bounds, backpressure, decoding across reads and the keep-alive pool.
import { once } from 'node:events'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import { BackendClient, MAX_PIECE, type BackendClientOptions, type BackendResult } from '../../src/backend-client.js'
import { MockBackend } from '../../src/mock-backend.js'

const ELEVEN = 'This is a deterministic answer from the poolcoord mock backend.'
const EMOJI = '\u{1F600}'
/** No lone surrogate: half a pair cut off from its other half. */
const wellFormed = (s: string): boolean => !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s)

const ask = (content: string, stream = false, model = 'mock-llama'): string =>
  JSON.stringify({ model, stream, stream_options: { include_usage: true }, messages: [{ role: 'user', content }] })

async function mock(t: Test): Promise<MockBackend & { url: string }> {
  const m = await MockBackend.start()
  t.teardown(() => m.close())
  return m
}

/** A backend of the test's own making; counts the connections it accepted. */
async function server(t: Test, handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ url: string; connections: () => number }> {
  const srv = createServer(handler)
  let connections = 0
  srv.on('connection', () => connections++)
  srv.listen(0, '127.0.0.1')
  await once(srv, 'listening')
  t.teardown(() => {
    srv.closeAllConnections()
    srv.close()
  })
  return { url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}/v1`, connections: () => connections }
}

function client(t: Test, url: string, o: Partial<BackendClientOptions> = {}): BackendClient {
  const c = new BackendClient(url, { maxSockets: 4, ...o })
  t.teardown(() => c.destroy())
  return c
}

/** Runs one call and collects what it sent as chunks. */
async function run(c: BackendClient, body: string, stream: boolean, holdLast = false): Promise<BackendResult & { sent: string[] }> {
  const sent: string[] = []
  const result = await c.forward(body, stream, (d) => void sent.push(d), holdLast).result
  return { ...result, sent }
}

t.test('2xx: a held answer and a stream, with usage', async (t) => {
  const m = await mock(t)
  const c = client(t, m.url)
  const whole = await run(c, ask('mock:tokens=11'), false)
  t.equal(whole.status, 'complete')
  t.equal(whole.sent.length, 1, 'one chunk: the whole answer')
  t.equal((JSON.parse(whole.sent[0]!) as { choices: Array<{ message: { content: string } }> }).choices[0]!.message.content, ELEVEN)
  t.same(whole.usage, { prompt_tokens: 1, completion_tokens: 11, total_tokens: 12 })
  t.equal(whole.data, undefined, 'nothing held back without holdLast')

  const stream = await run(c, ask('mock:tokens=11', true), true)
  t.equal(stream.status, 'complete')
  t.ok(stream.sent.join('').endsWith('data: [DONE]\n\n'), 'relayed to the end')
  t.same(stream.usage, { prompt_tokens: 1, completion_tokens: 11, total_tokens: 12 }, 'usage from the SSE event')
})

t.test('holdLast: a non-streamed answer keeps its last piece for the end frame', async (t) => {
  const m = await mock(t)
  const c = client(t, m.url)
  const small = await run(c, ask('mock:tokens=11'), false, true)
  t.same(small.sent, [], 'no chunk at all')
  t.match(JSON.parse(small.data!), { object: 'chat.completion', usage: { completion_tokens: 11 } }, 'the whole answer, in the result')

  // An answer over one piece: the pieces before the last go as chunks.
  const big = await run(c, ask('mock:tokens=40000'), false, true)
  t.equal(big.status, 'complete')
  t.ok(big.sent.length >= 1 && big.sent.every((p) => p.length <= MAX_PIECE), `${big.sent.length} chunks of at most MAX_PIECE`)
  t.ok(big.data!.length > 0 && big.data!.length <= MAX_PIECE, 'the last piece held back')
  t.match(JSON.parse(big.sent.join('') + big.data!), { usage: { completion_tokens: 40000 } }, 'chunks then data: the whole answer')

  const stream = await run(c, ask('mock:tokens=3', true), true, true)
  t.equal(stream.data, 'data: [DONE]\n\n', "a stream's last read, ending in [DONE], is held for the end frame")
  t.notOk(stream.sent.join('').includes('[DONE]'), 'and not sent as a chunk')
  t.match(stream.sent.join('') + stream.data, /^data: .*data: \[DONE\]\n\n$/s, 'chunks then data: the whole stream')
})

t.test('a stream held at [DONE] waits for nothing: a backend that keeps the answer open', async (t) => {
  let finish: () => void = () => {}
  const s = await server(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write('data: {"choices":[]}\n\ndata: [DONE]\n\n')
    finish = () => res.end()
  })
  const sent: string[] = []
  const call = client(t, s.url).forward(
    '{}',
    true,
    (d) => {
      sent.push(d)
      finish()
      return undefined
    },
    true,
  )
  const r = await call.result
  t.equal(r.status, 'complete')
  t.same(sent, ['data: {"choices":[]}\n\ndata: [DONE]\n\n'], 'sent at the end of its turn, before the backend ended the answer')
  t.equal(r.data, undefined, 'so the end carries nothing')
})

t.test('a stream that breaks after its [DONE] still relays it', async (t) => {
  const s = await server(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write('data: [DONE]\n\n', () => res.destroy())
  })
  const r = await run(client(t, s.url), '{}', true, true)
  t.match(r, { status: 'error_internal', errorCode: 'backend_stream_broken', data: undefined })
  t.same(r.sent, ['data: [DONE]\n\n'])
})

t.test('a held answer is cut into pieces on character boundaries', async (t) => {
  const answer = `${'a'.repeat(MAX_PIECE - 1)}${EMOJI}${'b'.repeat(10)}`
  const s = await server(t, (_req, res) => res.end(answer))
  const r = await run(client(t, s.url), '{}', false)
  t.equal(r.status, 'complete')
  t.same(
    r.sent.map((p) => p.length),
    [MAX_PIECE - 1, 12],
  )
  t.ok(
    r.sent.every((p) => wellFormed(p)),
    'no piece ends in half a surrogate pair',
  )
  t.equal(r.sent.join(''), answer)
})

t.test('a character cut between two reads of a stream arrives whole', async (t) => {
  const bytes = Buffer.from(`data: {"x":"${EMOJI}é"}\n\n`)
  const cut = bytes.indexOf(Buffer.from(EMOJI)) + 2 // inside the 4 bytes of the emoji
  let rest: (() => void) | null = null
  const s = await server(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write(bytes.subarray(0, cut))
    rest = () => res.end(bytes.subarray(cut))
  })
  const sent: string[] = []
  const call = client(t, s.url).forward('{}', true, (d) => {
    sent.push(d)
    // The first read came with half the character; only now does the server send the rest.
    rest?.()
    rest = null
    return undefined
  })
  t.equal((await call.result).status, 'complete')
  t.equal(sent[0], 'data: {"x":"', 'the first read relayed without the half character')
  t.equal(sent.join(''), bytes.toString('utf8'), 'and then whole')
})

t.test('statuses: 404, 429, 503, 400 context_length_exceeded, other 400, 500', async (t) => {
  const m = await mock(t)
  const c = client(t, m.url)
  t.match(await run(c, ask('hello', false, 'no-such-model'), false), { status: 'error_model_not_loaded', errorCode: 'backend_http_404' })
  t.match(await run(c, ask('mock:error=429'), false), { status: 'error_queue_full', errorCode: 'backend_http_429' })
  t.match(await run(c, ask('mock:error=503', true), true), { status: 'error_queue_full', errorCode: 'backend_http_503' })
  t.match(await run(c, ask('mock:error=400'), false), { status: 'error_internal', errorCode: 'backend_http_400' })
  t.match(await run(c, ask('mock:error=500'), false), { status: 'error_internal', errorCode: 'backend_http_500', sent: [] })

  const ctx = await server(t, (_req, res) => {
    res.writeHead(400, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ error: { message: 'too long', type: 'invalid_request_error', code: 'context_length_exceeded' } }))
  })
  const cc = client(t, ctx.url)
  t.match(await run(cc, '{}', false), { status: 'error_context_exceeded', errorCode: 'backend_http_400' })
  t.match(await run(cc, '{}', true), { status: 'error_context_exceeded' }, 'streamed or not')
  t.equal(ctx.connections(), 1, 'an error body is read to its end: the socket serves the next request')
})

t.test('an error body past its bound is not read to the end', async (t) => {
  const s = await server(t, (_req, res) => {
    res.writeHead(400, { 'content-type': 'application/json' })
    res.end(`{"error":{"code":"context_length_exceeded","padding":"${'x'.repeat(1000)}"}}`)
  })
  t.match(await run(client(t, s.url, { limits: { errorBody: 100 } }), '{}', false), { status: 'error_internal', errorCode: 'backend_http_400' })
})

t.test('connection refused: error_model_not_loaded, so the coordinator fails over', async (t) => {
  const m = await MockBackend.start()
  await m.close()
  t.match(await run(client(t, m.url), ask('hello'), false), { status: 'error_model_not_loaded', errorCode: 'backend_ECONNREFUSED', sent: [] })
})

t.test('cancel: the backend call is dropped at once and the result is cancelled', async (t) => {
  const m = await mock(t)
  const hanging = once(m, 'hanging')
  const aborted = once(m, 'aborted')
  const call = client(t, m.url).forward(ask('mock:hang', true), true, () => undefined)
  await hanging
  t.equal(call.cancelled, false)
  call.cancel()
  t.same(await call.result, { status: 'cancelled', usage: null })
  t.equal(call.cancelled, true)
  await aborted
  t.equal(m.stats.aborted, 1, 'the backend saw the client go')
  call.cancel()
  t.pass('a second cancel is harmless')
})

t.test('an answer over its bound is abandoned: error_internal, connection dropped', async (t) => {
  const m = await mock(t)
  const held = await run(client(t, m.url, { limits: { heldBytes: 1000 } }), ask('mock:tokens=1000'), false)
  t.match(held, { status: 'error_internal', errorCode: 'backend_answer_too_large', sent: [] })
  const streamed = await run(client(t, m.url, { limits: { streamedChars: 2000 } }), ask('mock:tokens=1000', true), true)
  t.match(streamed, { status: 'error_internal', errorCode: 'backend_answer_too_large' })
  t.ok(streamed.sent.join('').length <= 2000, 'nothing past the bound was relayed')
})

t.test('a broken answer: error_internal backend_stream_broken', async (t) => {
  const s = await server(t, (req, res) => {
    if (req.headers.accept === 'text/event-stream') {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      return void res.write('data: {"choices":[]}\n\n', () => res.destroy())
    }
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' })
    res.write('{"choices":', () => res.destroy())
  })
  const c = client(t, s.url)
  const cut = await run(c, '{}', true)
  t.match(cut, { status: 'error_internal', errorCode: 'backend_stream_broken' }, 'a stream cut short')
  t.same(cut.sent, ['data: {"choices":[]}\n\n'], 'what came before the cut was relayed')
  t.match(await run(c, '{}', false), { status: 'error_internal', errorCode: 'backend_stream_broken', sent: [] }, 'a held answer cut short')
  // The mock drops the connection in the same turn as its first events, so they may never leave it.
  const m = await mock(t)
  t.match(await run(client(t, m.url), ask('mock:cut=3', true), true), { status: 'error_internal' }, 'mock:cut')
})

t.test('backpressure: while the coordinator socket is backed up, the backend is not read', async (t) => {
  let second: (() => void) | null = null
  let finished: Promise<unknown> = Promise.resolve()
  const s = await server(t, (req, res) => {
    if (req.url === '/ping') return res.end('pong')
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write('data: one\n\n')
    second = () => {
      finished = once(res, 'finish')
      res.end('data: two\n\ndata: [DONE]\n\n')
    }
  })
  const sent: string[] = []
  let drained: () => void = () => {}
  let released = false
  const first = new Promise<void>((r) => (drained = r))
  const call = client(t, s.url).forward('{}', true, (d) => {
    sent.push(d)
    return sent.length === 1 ? first : undefined
  })
  await new Promise<void>((r) => {
    const poll = (): unknown => (second === null || sent.length === 0 ? setImmediate(poll) : r())
    poll()
  })
  second!()
  await finished
  // A round trip on another connection: by its answer, the rest of the stream had long arrived.
  await (await fetch(s.url.replace('/v1', '/ping'))).text()
  t.same(sent, ['data: one\n\n'], 'nothing more relayed while the first piece waits')
  released = true
  drained()
  t.equal((await call.result).status, 'complete')
  t.ok(released, 'completed only after the socket took the first piece')
  t.equal(sent.join(''), 'data: one\n\ndata: two\n\ndata: [DONE]\n\n')
})

t.test('keep-alive: sequential requests share one socket, and destroy() closes it', async (t) => {
  const closed: Promise<unknown>[] = []
  const s = await server(t, (req, res) => {
    closed.push(once(req.socket, 'close'))
    res.end('{"ok":true}')
  })
  const c = new BackendClient(s.url, { maxSockets: 2 })
  for (let i = 0; i < 3; i++) t.equal((await run(c, '{}', false)).status, 'complete')
  t.equal(s.connections(), 1, 'one connection for three requests')
  c.destroy()
  await Promise.all(closed)
  t.pass('the pooled socket closed on destroy')
})

t.test('a kept-alive socket the backend drops after reading the request: never sent twice', async (t) => {
  const perSocket = new WeakMap<object, number>()
  let requests = 0
  const s = await server(t, (req, res) => {
    requests++
    const n = (perSocket.get(req.socket) ?? 0) + 1
    perSocket.set(req.socket, n)
    // The backend read the second request and then died on it (a crash, a killed worker).
    if (n === 2) return void req.socket.destroy()
    res.end('{"ok":true}')
  })
  const c = client(t, s.url)
  t.equal((await run(c, '{}', false)).status, 'complete')
  const broken = await run(c, '{}', false)
  t.equal(broken.status, 'error_internal', 'ends as a broken connection; the coordinator fails it over')
  t.equal(requests, 2, 'the backend saw the request once: a retry would have run the prompt again')
  t.equal((await run(c, '{}', false)).status, 'complete', 'the next request gets a new socket')
})

t.test('an error answer whose body never ends does not hold its pool socket', async (t) => {
  let requests = 0
  const s = await server(t, (_req, res) => {
    requests++
    if (requests === 1) {
      res.writeHead(503, { 'content-type': 'application/json' })
      res.write('{"error":')
      return // never ends
    }
    res.end('{"ok":true}')
  })
  const c = new BackendClient(s.url, { maxSockets: 1 })
  t.teardown(() => c.destroy())
  t.equal((await run(c, '{}', false)).status, 'error_queue_full')
  t.equal((await run(c, '{}', false)).status, 'complete', 'the one socket was free for the next request')
})

t.test('an https backend URL is accepted, IPv6 literals too', async (t) => {
  t.doesNotThrow(() => new BackendClient('https://gpu.example:8443/v1', { maxSockets: 1 }).destroy())
  const s = await server(t, (_req, res) => res.end('{"ok":true}'))
  // Served on 127.0.0.1 only: a [::1] URL must at least parse and fail as unreachable, never throw.
  const r = await run(client(t, s.url.replace('127.0.0.1', '[::1]')), '{}', false)
  t.ok(r.status === 'error_model_not_loaded' || r.status === 'complete', r.status)
})
