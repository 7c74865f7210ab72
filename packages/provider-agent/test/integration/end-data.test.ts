// Feature end_data (protocol §2.2, §4.3): with a coordinator that offers it, a non-streamed answer
// is one frame, the end carrying the data; with one that does not, chunks and a bare end as before.
import { once } from 'node:events'
import { encode, helloAck, inferenceRequest } from '@poolcoord/protocol'
import t, { type Test } from 'tap'
import { WebSocketServer } from 'ws'
import { agentConfig, startAgent, startMock, stateDir } from '../../../coordinator/test/helpers/agent.js'
import { startTestService, waitFor } from '../../../coordinator/test/helpers/service.js'
import { MAX_PIECE } from '../../src/backend-client.js'
import { startFrameTap } from '../helpers/frame-tap.js'

const ELEVEN = 'This is a deterministic answer from the poolcoord mock backend.'

type Frame = Record<string, unknown>

/** A buyer's non-streamed request, raw: the answer's text and its request id. */
async function chat(url: string, content: string, stream = false): Promise<{ id: string; status: number; text: string }> {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'mock-llama', stream, messages: [{ role: 'user', content }] }),
  })
  return { id: res.headers.get('x-request-id') ?? '', status: res.status, text: await res.text() }
}

t.test('end_data offered: a non-streamed answer is one frame, the end with the answer in it', async (t) => {
  const svc = await startTestService(t)
  const mock = await startMock(t)
  const tap = await startFrameTap(t, svc.wsUrl)
  const a = await startAgent(t, agentConfig({ coordinatorUrl: tap.url, backendUrl: mock.url, stateDir: await stateDir(t) }))
  await a.admitted(2)
  t.same(a.agent.session?.ack?.features, ['end_data'], 'the coordinator offered it')

  const small = await chat(svc.url, 'mock:tokens=11')
  t.equal(small.status, 200)
  t.equal((JSON.parse(small.text) as { choices: Array<{ message: { content: string } }> }).choices[0]!.message.content, ELEVEN)
  const frames = tap.framesFor(small.id)
  t.equal(frames.length, 1, 'one frame for the whole answer')
  t.match(frames[0], { type: 'inference_response_end', status: 'complete', usage: { completion_tokens: 11 } })
  t.equal(frames[0]!.data, small.text, 'the end carries the answer exactly as the buyer got it')

  // Larger than one frame may carry: chunks for the earlier pieces, the last one in the end.
  const big = await chat(svc.url, 'mock:tokens=40000')
  t.equal(big.status, 200)
  const bigFrames = tap.framesFor(big.id)
  const chunks = bigFrames.slice(0, -1)
  const end = bigFrames[bigFrames.length - 1]!
  t.ok(chunks.length >= 1, `${chunks.length} chunk(s) before the end`)
  t.ok(
    chunks.every((f) => f.type === 'inference_response_chunk' && (f.data as string).length <= MAX_PIECE),
    'chunks of at most MAX_PIECE',
  )
  t.match(end, { type: 'inference_response_end', status: 'complete' })
  t.equal(chunks.map((f) => f.data as string).join('') + (end.data as string), big.text, 'in order, nothing lost')

  // A stream is relayed as it is read; the read that ends it, with [DONE], rides in the end.
  const stream = await chat(svc.url, 'mock:tokens=3', true)
  t.ok(stream.text.endsWith('data: [DONE]\n\n'))
  const streamFrames = tap.framesFor(stream.id)
  const streamEnd = streamFrames[streamFrames.length - 1]!
  t.match(streamEnd, { type: 'inference_response_end', status: 'complete', data: 'data: [DONE]\n\n' })
  t.equal(
    streamFrames
      .slice(0, -1)
      .map((f) => f.data as string)
      .join('') + (streamEnd.data as string),
    stream.text,
    'the buyer got every chunk, then the end data, in order',
  )

  // A failure is an end without data, as before.
  const failed = await chat(svc.url, 'mock:error=500')
  t.equal(failed.status, 502)
  await waitFor(() => tap.framesFor(failed.id).length === 1, 'the end of the failed request')
  t.match(tap.framesFor(failed.id)[0], { type: 'inference_response_end', status: 'error_internal', data: undefined })
})

/**
 * A coordinator of the test's making that acks a v1 hello with the given features (none: the
 * reference coordinator before end_data), dispatches one non-streamed request and collects the
 * agent's frames for it up to the end.
 */
async function oneRequestFrom(t: Test, features: string[] | undefined): Promise<Frame[]> {
  const mock = await startMock(t)
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' })
  t.teardown(() => new Promise<void>((r) => wss.close(() => r())))
  await once(wss, 'listening')
  const frames = new Promise<Frame[]>((resolve) => {
    wss.on('connection', (ws) => {
      const got: Frame[] = []
      ws.once('message', () => {
        ws.send(encode(helloAck({ assigned_id: 'x', heartbeat_interval_s: 30, auth_state: 'bearer_validated', ...(features ? { features } : {}) })))
        ws.send(encode(inferenceRequest('req-1', false, JSON.stringify({ model: 'mock-llama', messages: [{ role: 'user', content: 'mock:tokens=11' }] }))))
        ws.on('message', (m) => {
          const f = JSON.parse(String(m)) as Frame
          if (f.request_id !== 'req-1') return
          got.push(f)
          if (f.type === 'inference_response_end') resolve(got)
        })
      })
    })
  })
  const port = (wss.address() as { port: number }).port
  await startAgent(
    t,
    agentConfig({ coordinatorUrl: `ws://127.0.0.1:${port}/ws/provider`, backendUrl: mock.url, stateDir: await stateDir(t), providerId: 'old' }),
  )
  return frames
}

t.test('an older coordinator (no features in hello_ack): a chunk, then an end without data, as before', async (t) => {
  const frames = await oneRequestFrom(t, undefined)
  t.equal(frames.length, 2)
  t.match(frames[0], { type: 'inference_response_chunk', seq: 0 })
  t.match(JSON.parse(frames[0]!.data as string), { choices: [{ message: { content: ELEVEN } }] }, 'the whole answer in the chunk')
  t.match(frames[1], { type: 'inference_response_end', status: 'complete', usage: { completion_tokens: 11 } })
  t.notOk('data' in frames[1]!, 'the end carries no data')
})

t.test('features the agent does not know are kept and ignored', async (t) => {
  const other = await oneRequestFrom(t, ['something_else'])
  t.same(
    other.map((f) => f.type),
    ['inference_response_chunk', 'inference_response_end'],
    'no end_data: two frames',
  )
  const offered = await oneRequestFrom(t, ['something_else', 'end_data'])
  t.same(
    offered.map((f) => f.type),
    ['inference_response_end'],
    'end_data among others: one frame',
  )
})
