import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import type net from 'node:net'
import {
  Close,
  MAX_FIRST_FRAME_BYTES,
  MAX_PROVIDER_FRAME_BYTES,
  SUBPROTOCOL_V2,
  authProof,
  decodeJson,
  heartbeat,
  parseAuthChallenge,
  responseChunk,
  responseEnd,
  parseHelloAck,
  provedBytes,
  sha256Hex,
  signProof,
  type AuthChallengeMessage,
  type AuthInitMessage,
} from '@poolcoord/protocol'
import t from 'tap'
import type WebSocket from 'ws'
import { httpStatus } from '../../src/errors.js'
import { TokenStore } from '../../src/tokens/token-store.js'
import { bodyCase, type BodyCase, type BodyTarget } from '../helpers/body-fuzz.js'
import { buyer } from '../helpers/buyer.js'
import {
  FRAME_MODEL,
  admittedFrame,
  admittedVerdict,
  firstFrameCase,
  firstFrameVerdict,
  fuzzKeys,
  preview,
  proofVerdict,
  type Expected,
  type FrameLimits,
  type FuzzFrame,
} from '../helpers/frame-fuzz.js'
import { Rng, fuzzCount, fuzzSeed } from '../helpers/fuzz-rng.js'
import { keyJoin } from '../helpers/key-client.js'
import { captureLogs } from '../helpers/logs.js'
import { ProviderClient, type Closed } from '../helpers/provider-client.js'
import { rawHttp, type RawOutcome } from '../helpers/raw-http.js'
import { OPERATOR_KEY, startTestService, type TestService } from '../helpers/service.js'
import { TestProvider, TOKENS, answer } from '../helpers/test-provider.js'

/**
 * Issue 15: fault injection in the project's own tests. Fuzzed provider frames, before admission
 * (v1 hello, v2 auth_init, auth_proof after a real challenge) and after it (chunks and ends for
 * live and bogus request ids, heartbeats, unknown types, shapes past the parse bounds), and fuzzed
 * buyer and operator requests, all over real sockets against one in-process coordinator. Every
 * frame and request must get the answer the specs give it (frame-fuzz.ts and body-fuzz.ts compute
 * it), within a deadline; afterwards the heap is back near where it started and a well-behaved
 * provider is admitted and serves an `openai` client.
 *
 * FUZZ_FRAMES (default 10,000), FUZZ_BODIES (default a tenth of the frames) and FUZZ_SEED (a
 * number, or `random`; default fixed, so CI is deterministic) are read here only; `npm run fuzz`
 * runs 100,000 frames with a random seed. A failure prints the seed: the same seed gives the same
 * frames (with the request ids, challenges and nonces the coordinator issues), up to the first
 * answer that differs from the expected one.
 */
const seed = fuzzSeed(process.env.FUZZ_SEED, 0x15f022)
const FRAMES = fuzzCount(process.env.FUZZ_FRAMES, 10_000)
const BODIES = fuzzCount(process.env.FUZZ_BODIES, Math.ceil(FRAMES / 10))
const LIMITS: FrameLimits = { maxFrameBytes: MAX_PROVIDER_FRAME_BYTES, maxHelloBytes: MAX_FIRST_FRAME_BYTES }
/** Nothing here waits on a timer of the coordinator's, so any answer slower than this is a hang. */
const HANG_MS = 15_000
/** Lanes run side by side, each on its own generator, so that their frames interleave at the coordinator. */
const FIRST_LANES = 4
const ADMITTED_LANES = 4
const BODY_LANES = 3
/**
 * The share of frames sent as first frames. Each needs a connection of its own, and a valid one an
 * admission (about 10 ms of PGlite work), where a frame to an admitted session costs a tenth of a
 * millisecond unless it closes the session.
 */
const FIRST_SHARE = 0.15
const MiB = 1024 * 1024
/**
 * After a forced GC, the heap may end at most this far above where it was after the warm-up.
 * Measured: 4.7 MiB more after 10,000 frames, 5.7 after 60,000, 9.7 after 100,000; a heap
 * snapshot diff shows JIT code and the sockets of the last second or two (held by their close
 * timers), and no table that grows. A leak of 250 bytes a frame fails it at 100,000 frames, of
 * 2.5 KB at 10,000. RSS moved by -74 to +36 MiB in the same runs (malloc arenas, and PGlite's
 * WebAssembly memory, which grows with its tables and never shrinks), so its bound only catches
 * a runaway.
 */
const HEAP_GROWTH_BOUND = 24 * MiB
const RSS_GROWTH_BOUND = 512 * MiB

// `node --expose-gc` cannot be passed to one tap file; the flag can still be set at run time.
setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

function memory(): NodeJS.MemoryUsage {
  gc()
  gc()
  return process.memoryUsage()
}

/** What went wrong, with enough to reproduce it; the first few in full. */
class Findings {
  count = 0
  readonly first: Array<Record<string, unknown>> = []

  add(what: string, detail: Record<string, unknown>): void {
    this.count++
    if (this.first.length < 20) this.first.push({ what, seed, ...detail })
  }
}

function deadline<T>(p: Promise<T>, ms = HANG_MS): Promise<T | 'hang'> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([p, new Promise<'hang'>((r) => (timer = setTimeout(() => r('hang'), ms)))]).finally(() => clearTimeout(timer))
}

function send(ws: WebSocket, f: FuzzFrame): void {
  if (f.kind !== 'declared') return ws.send(f.data, { binary: f.kind === 'binary' })
  // A masked text frame whose 64-bit length says `size`: ws refuses it on the header.
  const header = Buffer.alloc(14)
  header[0] = 0x81
  header[1] = 0x80 | 127
  header.writeBigUInt64BE(BigInt(f.size), 2)
  ;(ws as unknown as { _socket: net.Socket })._socket.write(Buffer.concat([header, Buffer.alloc(64)]))
}

/** A ping after frames: its pong means they were taken and the session is open; a close means one was not. */
function settle(client: ProviderClient): Promise<'open' | Closed> {
  const ws = client.ws
  return new Promise((resolve) => {
    const onPong = (): void => {
      ws.off('pong', onPong)
      resolve('open')
    }
    ws.on('pong', onPong)
    void client.closed.then((c) => {
      ws.off('pong', onPong)
      resolve(c)
    })
    if (ws.readyState === ws.OPEN) ws.ping()
  })
}

function matches(expected: Expected, got: Closed): boolean {
  return 'close' in expected && expected.close.code === got.code && (expected.close.reason === null || expected.close.reason === got.reason)
}

/**
 * What a valid hello or an honest proof may still get instead of a hello_ack: a refusal by the
 * credential rules (4005), the mint rate limit (4008) or the queue for its id (4429), each with its
 * fixed reason. A valid auth_init always gets its challenge.
 */
const REFUSALS = Object.values(Close).filter((c) => c.code === 4005 || c.code === 4008 || c.code === 4429)

function refused(expected: Expected, got: Closed): boolean {
  return 'accept' in expected && REFUSALS.some((c) => c.code === got.code && c.reason === got.reason)
}

interface Tally {
  frames: number
  /** Admissions of the admitted lanes: one per session, so one per frame that closed one. */
  sessions: number
  bodies: number
  admitted: number
  challenged: number
  dispatched: number
}

async function firstFrameLane(s: TestService, rng: Rng, budget: number, tally: Tally, findings: Findings): Promise<void> {
  const keys = fuzzKeys(rng, 4)
  const origin = new URL(s.wsUrl).origin
  for (let sent = 0; sent < budget;) {
    const c = firstFrameCase(rng, keys, LIMITS)
    const client = await ProviderClient.connect(s.wsUrl, c.v2 ? { subprotocol: SUBPROTOCOL_V2 } : {})
    send(client.ws, c.frame)
    sent++
    tally.frames++
    const { expected, parsed } = firstFrameVerdict(c.frame, c.v2, LIMITS)
    const report = (what: string, got: unknown, extra: Record<string, unknown> = {}): void =>
      findings.add(what, { v2: c.v2, label: c.frame.label, frame: preview(c.frame), expected, got, ...extra })
    const got = await deadline(client.outcome())
    if (got === 'hang') {
      report('first frame: no answer', 'hang')
      client.ws.terminate()
      continue
    }
    if (got.close !== undefined) {
      if (!matches(expected, got.close) && !(!c.v2 && refused(expected, got.close))) report('first frame: wrong close', got.close)
      continue
    }
    const msg = got.ack as unknown as Record<string, unknown>
    if (!('accept' in expected) || parsed === null) {
      report('first frame: accepted, should have closed', msg)
      client.ws.terminate()
      continue
    }
    if (!c.v2) {
      if (!parseHelloAck(msg).ok) report('hello: malformed hello_ack', msg)
      else tally.admitted++
      await client.close()
      continue
    }
    const ch = parseAuthChallenge(msg)
    if (!ch.ok || ch.value.origin !== origin) {
      report('auth_init: no valid challenge', msg)
      client.ws.terminate()
      continue
    }
    tally.challenged++
    const init = parsed as AuthInitMessage
    const key = c.key as NonNullable<typeof c.key>
    const honest = authProof(ch.value.challenge_id, signProof(key, provedBytesFor(init, ch.value, c.frame)))
    const proof = c.proof(honest)
    send(client.ws, proof)
    sent++
    tally.frames++
    const proofExpected = proofVerdict(proof, LIMITS, honest, init.identity_key === key.publicKey)
    const after = await deadline(client.outcome())
    const where = { proof: preview(proof), proofLabel: proof.label, proofExpected }
    if (after === 'hang') {
      report('auth_proof: no answer', 'hang', where)
      client.ws.terminate()
    } else if (after.close !== undefined) {
      if (!matches(proofExpected, after.close) && !refused(proofExpected, after.close)) report('auth_proof: wrong close', after.close, where)
    } else {
      const ack = parseHelloAck(after.ack as unknown as Record<string, unknown>)
      if (!('accept' in proofExpected) || !ack.ok || ack.value.auth_state !== 'key_proven') report('auth_proof: wrongly admitted', after.ack, where)
      else tally.admitted++
      await client.close()
    }
  }
}

/** The bytes an honest provider signs for this init (protocol.md §2.4): its claims, the challenge, and the init exactly as sent. */
function provedBytesFor(init: AuthInitMessage, ch: AuthChallengeMessage, frame: FuzzFrame): Buffer {
  return provedBytes({
    origin: ch.origin,
    intent: init.intent,
    providerId: init.provider_id,
    identityKey: init.identity_key,
    nextIdentityKey: init.next_identity_key ?? null,
    challengeId: ch.challenge_id,
    nonce: ch.nonce,
    issuedAt: ch.issued_at,
    initSha256: sha256Hex(frame.kind === 'declared' ? '' : frame.data),
  })
}

/** A buyer request pinned to a lane's session; it must end one way or another once the session does. */
function laneRequest(port: number, providerId: string, stream: boolean): Promise<RawOutcome> {
  const body = JSON.stringify({ model: FRAME_MODEL, messages: [{ role: 'user', content: 'fuzz' }], stream })
  const head = `POST /v1/chat/completions HTTP/1.1\r\nHost: coordinator\r\nConnection: close\r\nX-Pool-Provider: ${providerId}\r\nContent-Length: ${body.length}\r\n\r\n`
  return rawHttp(port, Buffer.from(head + body), HANG_MS)
}

/** Frames a session takes, sent back to back before one ping checks them all: a ping per frame would cost four times as much. */
const BATCH = 16

async function admittedLane(
  s: TestService,
  port: number,
  rng: Rng,
  providerId: string,
  token: string,
  budget: number,
  tally: Tally,
  findings: Findings,
): Promise<void> {
  for (let sent = 0; sent < budget;) {
    const client = await ProviderClient.connect(s.wsUrl, { token })
    tally.sessions++
    client.hello(providerId, { model_id: FRAME_MODEL, max_concurrency: 4 })
    const o = await deadline(client.outcome())
    if (o === 'hang' || o.ack?.auth_state !== 'bearer_validated') {
      findings.add('lane admission failed', { providerId, got: o })
      client.ws.terminate()
      return
    }
    const ws = client.ws
    /**
     * Requests dispatched to this session, in order; the last seq sent for each; those the
     * coordinator still holds; those not yet ended by this lane. Cancels (a stream whose buyer
     * falls behind) depend on timing, so what the lane generates depends on `unended` only.
     */
    const order: string[] = []
    const lastSeq = new Map<string, number>()
    const live = new Set<string>()
    const unended = new Set<string>()
    const cancelled = new Set<string>()
    const buyers: Array<Promise<RawOutcome>> = []
    let onRequest: (() => void) | null = null
    ws.on('message', (data) => {
      const m = decodeJson(data as Buffer)
      if (m?.type === 'inference_request' && typeof m.request_id === 'string') {
        order.push(m.request_id)
        lastSeq.set(m.request_id, -1)
        live.add(m.request_id)
        unended.add(m.request_id)
        onRequest?.()
      } else if (m?.type === 'cancel_request' && typeof m.request_id === 'string') {
        live.delete(m.request_id)
        cancelled.add(m.request_id)
      }
    })
    const ids = { real: order, lastSeq: (id: string) => lastSeq.get(id) ?? -1 }
    let batch: Array<{ f: FuzzFrame; expected: Expected; requestId: string | null }> = []
    let open = true
    for (let n = rng.range(20, 300); n > 0 && sent < budget && open; n--) {
      if (unended.size < 2 && rng.chance(0.04)) {
        // Routable again whatever the fuzzed heartbeats said, then one request pinned here.
        client.send(heartbeat('ready', 4, 4, { model_id: FRAME_MODEL }))
        batch.push({ f: { kind: 'text', data: Buffer.alloc(0), label: 'control: ready heartbeat' }, expected: { accept: true }, requestId: null })
        if (!(await check())) break
        const before = order.length
        const dispatched = new Promise<void>((r) => (onRequest = r))
        const answer = laneRequest(port, providerId, rng.chance(0.5))
        buyers.push(answer)
        const first = await deadline(Promise.race([dispatched, answer]))
        onRequest = null
        if (order.length === before) findings.add('a pinned request to a ready session was not dispatched', { providerId, got: first })
        else tally.dispatched++
      }
      const f = admittedFrame(rng, ids, LIMITS)
      const v = admittedVerdict(f, LIMITS)
      let expected: Expected = { accept: true }
      const m = 'message' in v ? v.message : null
      // The model of the dispatcher, applied as the frame is sent: the frames after it in the batch see its effect.
      if ('close' in v) expected = v.close
      else if (m?.type === 'inference_response_chunk' && lastSeq.has(m.request_id)) {
        if (m.seq > (lastSeq.get(m.request_id) as number)) lastSeq.set(m.request_id, m.seq)
        else if (live.has(m.request_id)) expected = { close: { code: 4003, reason: 'invalid_frame: seq' } }
      } else if (m?.type === 'inference_response_end') {
        live.delete(m.request_id)
        unended.delete(m.request_id)
      }
      send(ws, f)
      sent++
      tally.frames++
      batch.push({ f, expected, requestId: m !== null && 'request_id' in m ? m.request_id : null })
      if ('close' in expected || batch.length >= BATCH || n === 1 || sent === budget) open = await check()
    }
    if (open && batch.length > 0) await check()
    if (ws.readyState !== ws.CLOSED) await client.close()
    // Every request on the session ends with it: an answer, never a hang or a cut connection.
    for (const answer of await Promise.all(buyers)) {
      const problem =
        'response' in answer
          ? checkAnswer(answer.response.status, answer.response.headers['content-type'], answer.response.body.toString('utf8'), [200, 400, 502, 503, 504])
          : 'timeout' in answer
            ? 'no answer after its session closed'
            : 'connection closed without an answer'
      if (problem !== null) findings.add(`lane request: ${problem}`, { providerId, answer })
    }

    /** Settles the batch: all taken and the session open, or closed as its last frame says. False once closed. */
    async function check(): Promise<boolean> {
      const sentBatch = batch
      batch = []
      const last = sentBatch[sentBatch.length - 1]!
      const got = await deadline(settle(client))
      const report = (what: string): void =>
        findings.add(what, {
          providerId,
          expected: last.expected,
          got,
          frames: sentBatch.map((b) => `${b.f.label}: ${preview(b.f)}`),
        })
      if (got === 'hang') {
        report('admitted frames: no answer')
        ws.terminate()
        return false
      }
      if (got === 'open') {
        // A cancel that crossed a bad seq on the wire made the frame a stray one: ignored.
        const crossed = last.requestId !== null && cancelled.has(last.requestId)
        if ('close' in last.expected && !crossed) report('admitted frame: taken, should have closed')
        return true
      }
      if (!matches(last.expected, got))
        report(sentBatch.length === 1 ? 'admitted frame: wrong close' : 'admitted frames: a close within the batch, or the wrong one')
      return false
    }
  }
}

/**
 * The provider that answers the body fuzzer's valid requests, as the `answer()` of test-provider.ts
 * does. Its own message handler only: a ProviderClient keeps every message it is sent, and this one
 * is sent thousands, which the heap measurement would count.
 */
async function answeringProvider(s: TestService, providerId: string, token: string, model: string): Promise<void> {
  const client = await ProviderClient.connect(s.wsUrl, { token })
  client.hello(providerId, { model_id: model, max_concurrency: 256 })
  const o = await client.outcome()
  if (o.ack === undefined) throw new Error(`the answering provider was not admitted: ${o.close.code}`)
  client.ws.removeAllListeners('message')
  client.ws.on('message', (data) => {
    const m = decodeJson(data as Buffer)
    if (m?.type !== 'inference_request' || typeof m.request_id !== 'string') return
    const id = m.request_id
    if (m.stream === true) {
      TOKENS.forEach((content, i) => client.send(responseChunk(id, i, `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content } }] })}\n\n`)))
      client.send(responseChunk(id, TOKENS.length, 'data: [DONE]\n\n'))
    } else {
      client.send(
        responseChunk(id, 0, JSON.stringify({ object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: ANSWER_TEXT } }] })),
      )
    }
    client.send(responseEnd(id, 'complete'))
  })
}

/** The shape every HTTP answer must have; null when it has it. */
function checkAnswer(status: number, contentType: string | null | undefined, body: string, allowed: number[]): string | null {
  if (!allowed.includes(status)) return `status ${status}, allowed ${allowed.join('/')}`
  if (status < 400) return null
  if (!contentType?.startsWith('application/json')) return `error with content-type ${contentType}`
  const e = (decodeJson(body)?.error ?? null) as Record<string, unknown> | null
  if (e === null || typeof e.message !== 'string' || typeof e.type !== 'string' || typeof e.code !== 'string') return 'not an error envelope'
  if (httpStatus[e.code] !== status) return `code ${e.code} with status ${status}`
  const type = status === 401 ? 'authentication_error' : status >= 500 ? 'server_error' : 'invalid_request_error'
  return e.type === type ? null : `type ${e.type} with status ${status}`
}

const ANSWER_TEXT = TOKENS.join('')

function checkBody(c: BodyCase, out: RawOutcome): string | null {
  if ('timeout' in out) return 'no answer (hang)'
  if ('closed' in out) return c.expect.kind === 'malformed' ? null : `connection closed after ${out.closed.bytes} bytes, no answer`
  const r = out.response
  const text = r.body.toString('utf8')
  const e = c.expect
  if (e.kind === 'malformed')
    return r.status >= 500 ? `malformed request answered ${r.status}` : checkAnswer(r.status, r.headers['content-type'], text, [r.status])
  if (e.kind === 'one-of') return checkAnswer(r.status, r.headers['content-type'], text, e.statuses)
  const shape = checkAnswer(r.status, r.headers['content-type'], text, [e.status])
  if (shape !== null) return shape
  if (c.route === 'chat' && !/^req-[0-9a-f-]{36}$/.test(r.headers['x-request-id'] ?? '')) return 'no X-Request-Id'
  if (e.code !== null) return (decodeJson(text)?.error as { code?: string }).code === e.code ? null : `code, expected ${e.code}`
  if (c.route !== 'chat') return decodeJson(text) === null ? 'success body is not JSON' : null
  if (e.stream) return r.headers['content-type']?.startsWith('text/event-stream') && text.endsWith('data: [DONE]\n\n') ? null : 'not a whole event stream'
  const content = (decodeJson(text) as { choices?: Array<{ message?: { content?: string } }> } | null)?.choices?.[0]?.message?.content
  return content === ANSWER_TEXT ? null : 'not the provider answer'
}

async function bodyLane(port: number, rng: Rng, target: BodyTarget, budget: number, tally: Tally, findings: Findings): Promise<void> {
  for (let i = 0; i < budget; i++) {
    const c = bodyCase(rng, target)
    const out = await rawHttp(port, c.request, HANG_MS)
    tally.bodies++
    const problem = checkBody(c, out)
    if (problem !== null) {
      const got = 'response' in out ? { status: out.response.status, body: out.response.body.subarray(0, 300).toString('utf8') } : out
      findings.add(`body: ${problem}`, { label: c.label, request: c.request.subarray(0, 400).toString('utf8'), bytes: c.request.length, expect: c.expect, got })
    }
  }
}

function split(total: number, lanes: number): number[] {
  return Array.from({ length: lanes }, (_, i) => Math.floor(total / lanes) + (i < total % lanes ? 1 : 0))
}

t.test('fuzzed provider frames and buyer requests leave the coordinator up, bounded and serving', async (t) => {
  const logs = captureLogs('error')
  const s = await startTestService(t, { logs, limits: { maxPendingPerIp: 64, maxPendingConnections: 256 } })
  const port = Number(new URL(s.url).port)
  const store = new TokenStore(s.db)
  const issue = async (id: string) => (await store.issue(id, 'fuzz', 'operator_issued')).token
  await answeringProvider(s, 'fz-answer', await issue('fz-answer'), 'fuzz-model')
  const target: BodyTarget = { model: 'fuzz-model', providerId: 'fz-answer', maxBodyBytes: s.svc.ctx.config.limits.maxBodyBytes, operatorKey: OPERATOR_KEY }
  const lanes = await Promise.all(Array.from({ length: ADMITTED_LANES }, async (_, i) => ({ id: `fz-lane-${i}`, token: await issue(`fz-lane-${i}`) })))
  const findings = new Findings()
  console.error(`# fuzz seed ${seed} (FUZZ_SEED=${seed} to repeat): ${FRAMES} frames, ${BODIES} requests`)

  const run = async (name: string, frames: number, bodies: number): Promise<Tally & { ms: number; cpuMs: number }> => {
    const root = new Rng(seed).fork(name)
    const tally: Tally = { sessions: 0, frames: 0, bodies: 0, admitted: 0, challenged: 0, dispatched: 0 }
    const started = performance.now()
    const cpu0 = process.cpuUsage()
    const first = split(Math.round(frames * FIRST_SHARE), FIRST_LANES)
    const admitted = split(frames - Math.round(frames * FIRST_SHARE), ADMITTED_LANES)
    await Promise.all([
      ...first.map((n, i) => firstFrameLane(s, root.fork(`first-${i}`), n, tally, findings)),
      ...admitted.map((n, i) => admittedLane(s, port, root.fork(`admitted-${i}`), lanes[i]!.id, lanes[i]!.token, n, tally, findings)),
      ...split(bodies, BODY_LANES).map((n, i) => bodyLane(port, root.fork(`body-${i}`), target, n, tally, findings)),
    ])
    const cpu = process.cpuUsage(cpu0)
    return { ...tally, ms: performance.now() - started, cpuMs: (cpu.user + cpu.system) / 1000 }
  }

  // Caches that fill once (JIT, statement plans, first-use allocations) fill here, outside the measurement.
  await run('warm-up', 500, 100)
  const before = memory()
  const r = await run('fuzz', FRAMES, BODIES)
  const after = memory()

  const sec = r.ms / 1000
  const heapGrowth = after.heapUsed - before.heapUsed
  const rssGrowth = after.rss - before.rss
  console.error(
    `# fuzz: ${r.frames} frames and ${r.bodies} requests in ${sec.toFixed(1)} s ` +
      `(${Math.round(r.frames / sec)} frames/s and ${Math.round(r.bodies / sec)} requests/s, side by side); ` +
      `${(r.cpuMs / 1000).toFixed(1)} s of CPU; ${r.admitted} first frames admitted, ${r.challenged} challenged, ` +
      `${r.sessions} sessions fuzzed, ${r.dispatched} requests dispatched to them; ` +
      `heap ${(before.heapUsed / MiB).toFixed(1)} → ${(after.heapUsed / MiB).toFixed(1)} MiB, rss ${(before.rss / MiB).toFixed(1)} → ${(after.rss / MiB).toFixed(1)} MiB`,
  )
  // A first-frame lane may end on an init and its proof, one past its share.
  t.ok(r.frames >= FRAMES && r.frames <= FRAMES + FIRST_LANES, `every frame was sent (${r.frames})`)
  t.equal(r.bodies, BODIES, 'every request was sent')
  t.same(findings.first, [], `${findings.count} frames or requests answered wrongly (seed ${seed})`)
  t.same(
    logs.lines.map((l) => JSON.parse(l) as unknown),
    [],
    'nothing logged at error level: no 500, no failed admission',
  )
  t.ok(heapGrowth < HEAP_GROWTH_BOUND, `heap after GC grew ${(heapGrowth / MiB).toFixed(1)} MiB (bound ${HEAP_GROWTH_BOUND / MiB})`)
  t.ok(rssGrowth < RSS_GROWTH_BOUND, `rss grew ${(rssGrowth / MiB).toFixed(1)} MiB (bound ${RSS_GROWTH_BOUND / MiB})`)

  // Still up, and still doing its job for providers and buyers that follow the protocol.
  const health = await rawHttp(port, Buffer.from('GET /healthz HTTP/1.1\r\nHost: coordinator\r\nConnection: close\r\n\r\n'), HANG_MS)
  t.equal('response' in health && health.response.status, 200, 'healthz')
  const good = await TestProvider.join(s.wsUrl, 'fz-after', { token: await issue('fz-after'), hello: { model_id: 'after-model' }, handler: answer() })
  t.equal(good.ack.auth_state, 'bearer_validated', 'a well-behaved provider is admitted')
  const client = buyer(s.url)
  const pinned = { headers: { 'X-Pool-Provider': 'fz-after' } }
  const done = await client.chat.completions.create({ model: 'after-model', messages: [{ role: 'user', content: 'hi' }] }, pinned)
  t.equal(done.choices[0]?.message.content, ANSWER_TEXT, 'and serves a buyer')
  let streamed = ''
  for await (const chunk of await client.chat.completions.create({ model: 'after-model', stream: true, messages: [{ role: 'user', content: 'hi' }] }, pinned)) {
    streamed += chunk.choices[0]?.delta.content ?? ''
  }
  t.equal(streamed, ANSWER_TEXT, 'and streams to a buyer')
  const keyed = await keyJoin(s.wsUrl, 'fz-after-v2', fuzzKeys(new Rng(seed), 1)[0]!, { token: await issue('fz-after-v2'), intent: 'enroll' })
  t.equal(keyed.ack?.auth_state, 'key_proven', 'an identity-v2 provider proves its key and is admitted')
})
