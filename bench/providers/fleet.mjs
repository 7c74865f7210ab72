// Many provider connections in one process, driven over IPC by the bench runner. Each
// connection has its own loopback source address (127.<block>.x.y), as real providers each have
// their own: the per-address pre-admission limit then never binds, and reconnects never hit a
// source address crowded with TIME_WAIT ports. Commands (reply type `<cmd>:done`):
//   connect    {url, protocol: poolcoord|raw, from, count, auth: seeded|seeded-key|none, idPrefix, block, inflight, maxConcurrency, answer}
//              seeded: the bearer of seeded id i, v1 hello; seeded-key: the same bearer and identity
//              v2 (poolcoord.v2, auth_init with intent connect, auth_proof signed with key i)
//   keys       {from, count}  derive the identity keys of ids from..from+count-1 ahead of a measured connect
//   heartbeats {intervalMs}   start (0: stop) heartbeats, spread evenly over the interval
//   count      heartbeats sent, open sessions
//   herd       {baseMs, capMs, deadlineMs, urls?}  from now on, reconnect lost sessions with capped
//              exponential backoff and full jitter; to their own url, or, given `urls`, to one of
//              those (the same one for a connection every time), as a load balancer would send them
//   herd-stats
//   close-all
import {
  SUBPROTOCOL_V2,
  FEATURE_END_DATA,
  authInit,
  authProof,
  authorizationHeader,
  encode,
  heartbeat,
  hello,
  identityKeyFromSeed,
  provedBytes,
  responseChunk,
  responseEnd,
  sha256Hex,
  signProof,
} from '@poolcoord/protocol'
import { createPrivateKey, sign } from 'node:crypto'
import WebSocket from 'ws'
import { JSON_ANSWER, MODEL, USAGE } from '../lib/payloads.mjs'
import { benchKeySeed, benchToken, seededProviderId } from '../lib/tokens.mjs'

const TICK_MS = 100
const conns = []
let settings = null
let heartbeatsSent = 0
let ticker = null
let herd = null
/**
 * Identity keys by seeded index: {privateSeed, publicKey, signer}, `signer` the private KeyObject.
 * Importing the seed (signProof does it per call) costs ~0.4 ms of CPU, ten times the signature
 * itself; here that would be taken from the coordinator on the same box, so each key is imported
 * once, before the measured connects, and the proof is signed with crypto.sign directly (Ed25519
 * is deterministic: the same signature as signProof's, checked in `keys`).
 */
const keyPairs = new Map()

process.on('disconnect', () => process.exit(0))
process.on('message', (m) => {
  const handler = handlers[m.cmd]
  Promise.resolve(handler(m)).then(
    (reply) => process.send({ type: `${m.cmd}:done`, ...reply }),
    (err) => process.send({ type: `${m.cmd}:done`, error: String(err?.stack ?? err) }),
  )
})

function address(block, i) {
  if (i >= 63_750) throw new Error('at most 63,750 source addresses per block')
  return `127.${block}.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`
}

function bump(counts, key) {
  counts[key] = (counts[key] ?? 0) + 1
}

function helloFields(c) {
  return {
    provider_id: c.id,
    hostname: `${c.id}.bench`,
    model_id: MODEL,
    binary_version: 'bench-1',
    max_concurrency: settings.maxConcurrency,
    max_context_tokens: 8192,
  }
}

function helloFrame(c) {
  return encode(hello(helloFields(c)))
}

function keyPair(i) {
  let pair = keyPairs.get(i)
  if (pair === undefined) {
    const { privateSeed, publicKey } = identityKeyFromSeed(benchKeySeed(i))
    const signer = createPrivateKey({ key: { kty: 'OKP', crv: 'Ed25519', d: privateSeed, x: publicKey }, format: 'jwk' })
    keyPairs.set(i, (pair = { privateSeed, publicKey, signer }))
  }
  return pair
}

/** The auth_proof for a challenge, as specs/protocol.md §2.4 says; `initText` is the auth_init frame exactly as sent. */
function proofFrame(c, challenge, initText) {
  const bytes = provedBytes({
    origin: challenge.origin,
    intent: 'connect',
    providerId: c.id,
    identityKey: c.key.publicKey,
    nextIdentityKey: null,
    challengeId: challenge.challenge_id,
    nonce: challenge.nonce,
    issuedAt: challenge.issued_at,
    initSha256: sha256Hex(initText),
  })
  return encode(authProof(challenge.challenge_id, sign(null, bytes, c.key.signer).toString('base64url')))
}

/** As the agent answers: in one frame when the coordinator offered `end_data` (specs/protocol.md §4.3), else a chunk and an end. */
function answer(ws, req) {
  if (ws.endData === true) return ws.send(encode(responseEnd(req.request_id, 'complete', { usage: USAGE, data: JSON_ANSWER })))
  ws.send(encode(responseChunk(req.request_id, 0, JSON_ANSWER)))
  ws.send(encode(responseEnd(req.request_id, 'complete', { usage: USAGE })))
}

/**
 * One connection attempt, up to hello_ack (poolcoord) or open (raw). A keyed connection (v2)
 * checks the challenge's origin against the one it dialled before signing, as the agent does,
 * and counts an ack that is not key_proven, or that renews its bearer, as a failure: the bench
 * is then not measuring what it says.
 */
function attempt(c) {
  return new Promise((resolve) => {
    const started = performance.now()
    const poolcoord = settings.protocol === 'poolcoord'
    const v2 = poolcoord && c.key !== null
    const headers = c.token !== null && poolcoord ? { authorization: authorizationHeader(c.token) } : undefined
    const options = { headers, perMessageDeflate: false, localAddress: c.addr, handshakeTimeout: 20_000 }
    const ws = v2 ? new WebSocket(c.url, [SUBPROTOCOL_V2], options) : new WebSocket(c.url, options)
    let initText = null
    let settled = false
    const settle = (outcome) => {
      if (settled) return
      settled = true
      resolve({ ...outcome, ms: performance.now() - started })
    }
    ws.on('error', (err) => settle({ kind: 'error', key: `error:${err.code ?? 'ws'}` }))
    ws.on('unexpected-response', (_req, res) => {
      res.resume()
      settle({ kind: 'http', key: `http:${res.statusCode}` })
      ws.terminate()
    })
    ws.on('open', () => {
      if (v2) {
        initText = encode(authInit(helloFields(c), { identity_key: c.key.publicKey, intent: 'connect', next_identity_key: null }))
        return ws.send(initText)
      }
      if (poolcoord) return ws.send(helloFrame(c))
      c.ws = ws
      settle({ kind: 'ok' })
    })
    ws.on('message', (data) => {
      const msg = JSON.parse(data)
      // The ideal relay's minimal protocol (baselines/ideal-relay.mjs), for the pool floor.
      if (msg.type === 'request') {
        if (settings.answer && !msg.stream) ws.send(JSON.stringify({ type: 'response', id: msg.id, body: JSON_ANSWER }))
      } else if (msg.type === 'inference_request') {
        if (settings.answer) answer(ws, msg)
      } else if (msg.type === 'auth_challenge' && v2 && initText !== null) {
        if (msg.origin !== new URL(c.url).origin) {
          settle({ kind: 'origin', key: 'origin_mismatch' })
          return ws.close(1000, 'origin_mismatch')
        }
        ws.send(proofFrame(c, msg, initText))
        initText = null
      } else if (msg.type === 'hello_ack') {
        const renewed = msg.assigned_provider_token !== undefined
        if (renewed) c.token = msg.assigned_provider_token
        c.authState = msg.auth_state
        c.ws = ws
        ws.endData = Array.isArray(msg.features) && msg.features.includes(FEATURE_END_DATA)
        if (v2 && msg.auth_state !== 'key_proven') settle({ kind: 'auth', key: `auth_state:${msg.auth_state}` })
        else if (v2 && renewed) settle({ kind: 'renewed', key: 'token_renewed' })
        else settle({ kind: 'ok' })
      }
    })
    ws.on('close', (code) => {
      if (!settled) return settle({ kind: 'close', key: `close:${code}` })
      if (c.ws !== ws) return
      c.ws = null
      onLost(c, code)
    })
  })
}

function onLost(c, code) {
  if (herd === null) return
  bump(herd.lost, `close:${code}`)
  // 4005 with a valid token is the wrongful rejection we count; 4006 means another instance is live.
  if (code === 4005 || code === 4006) return
  void reconnect(c)
}

async function reconnect(c) {
  const h = herd
  for (let n = 0; h === herd && performance.now() < h.deadline; n++) {
    await new Promise((r) => setTimeout(r, Math.random() * Math.min(h.capMs, h.baseMs * 2 ** n)))
    if (h !== herd) return
    if (h.urls !== null) c.url = h.urls[c.seq % h.urls.length]
    h.attempts++
    const out = await attempt(c)
    if (out.kind === 'ok') {
      h.back++
      h.lastBackAt = performance.timeOrigin + performance.now()
      return
    }
    bump(h.outcomes, out.key)
    if (out.key === 'close:4005' || out.key === 'close:4006') return
  }
}

const handlers = {
  async connect(m) {
    settings = { protocol: m.protocol, maxConcurrency: m.maxConcurrency ?? 4, answer: m.answer ?? false }
    const batch = []
    for (let k = 0; k < m.count; k++) {
      const i = m.from + k
      const seeded = m.auth === 'seeded' || m.auth === 'seeded-key'
      const c = {
        id: seeded ? seededProviderId(i) : `${m.idPrefix}${i}`,
        token: seeded ? benchToken(i) : null,
        key: m.auth === 'seeded-key' ? keyPair(i) : null,
        // Per connection: one process may hold connections to several coordinators (cluster nodes).
        url: m.url,
        seq: conns.length,
        addr: address(m.block, i),
        ws: null,
        authState: null,
      }
      conns.push(c)
      batch.push(c)
    }
    const outcomes = {}
    const latencies = []
    let next = 0
    const startedAt = performance.timeOrigin + performance.now()
    const worker = async () => {
      while (next < batch.length) {
        const c = batch[next++]
        const out = await attempt(c)
        if (out.kind === 'ok') latencies.push(out.ms)
        else bump(outcomes, out.key)
      }
    }
    await Promise.all(Array.from({ length: Math.min(m.inflight, batch.length) }, worker))
    return {
      ok: latencies.length,
      failed: batch.length - latencies.length,
      outcomes,
      latencies,
      startedAt,
      endedAt: performance.timeOrigin + performance.now(),
    }
  },

  keys(m) {
    for (let i = m.from; i < m.from + m.count; i++) keyPair(i)
    const probe = Buffer.from('poolcoord bench signer check')
    const k = keyPair(m.from)
    if (sign(null, probe, k.signer).toString('base64url') !== signProof(k, probe)) throw new Error('bench signer disagrees with signProof')
    return { keys: keyPairs.size }
  },

  heartbeats(m) {
    clearInterval(ticker)
    ticker = null
    if (m.intervalMs <= 0) return {}
    const buckets = Math.max(1, Math.round(m.intervalMs / TICK_MS))
    const frame = encode(heartbeat('ready', settings.maxConcurrency, settings.maxConcurrency))
    let tick = 0
    ticker = setInterval(() => {
      const b = tick++ % buckets
      for (let i = b; i < conns.length; i += buckets) {
        const ws = conns[i].ws
        if (ws !== null && ws.readyState === WebSocket.OPEN) {
          ws.send(frame)
          heartbeatsSent++
        }
      }
    }, TICK_MS)
    return {}
  },

  count() {
    return { heartbeatsSent, open: conns.filter((c) => c.ws !== null && c.ws.readyState === WebSocket.OPEN).length }
  },

  herd(m) {
    herd = {
      baseMs: m.baseMs,
      capMs: m.capMs,
      urls: m.urls ?? null,
      deadline: performance.now() + m.deadlineMs,
      back: 0,
      attempts: 0,
      lastBackAt: null,
      lost: {},
      outcomes: {},
    }
    return {}
  },

  'herd-stats'() {
    const h = herd
    const openByUrl = {}
    for (const c of conns) if (c.ws !== null && c.ws.readyState === WebSocket.OPEN) bump(openByUrl, c.url)
    const open = Object.values(openByUrl).reduce((a, b) => a + b, 0)
    return h === null
      ? { open, openByUrl }
      : { open, openByUrl, back: h.back, attempts: h.attempts, lastBackAt: h.lastBackAt, lost: h.lost, outcomes: h.outcomes }
  },

  async 'close-all'() {
    herd = null
    clearInterval(ticker)
    ticker = null
    const closing = []
    for (const c of conns) {
      const ws = c.ws
      c.ws = null
      if (ws === null || ws.readyState === WebSocket.CLOSED) continue
      closing.push(
        new Promise((resolve) => {
          const timer = setTimeout(() => {
            ws.terminate()
            resolve()
          }, 5000)
          ws.once('close', () => {
            clearTimeout(timer)
            resolve()
          })
          ws.close(1000)
        }),
      )
    }
    await Promise.all(closing)
    conns.length = 0
    return { closed: closing.length }
  },
}
