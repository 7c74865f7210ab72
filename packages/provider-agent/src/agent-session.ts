/**
 * One provider socket: upgrade (with the bearer, if any), hello, hello_ack, heartbeats, and the
 * requests dispatched on it (specs/protocol.md). It knows nothing of state files or backoff:
 * the agent decides what a close means. Frames for a request only ever go back on the socket it
 * arrived on, and when the socket closes, every backend call it started is aborted.
 */
import {
  Close,
  FEATURE_END_DATA,
  MAX_INFERENCE_REQUEST_BYTES,
  SUBPROTOCOL_V2,
  authInit,
  authProof,
  authorizationHeader,
  parseAuthChallenge,
  provedBytes,
  sha256Hex,
  signProof,
  type IdentityIntent,
  type IdentityKeyPair,
  InFlightTable,
  decodeJson,
  encode,
  heartbeat,
  hello,
  parseCoordinatorMessage,
  parseHelloAck,
  responseChunk,
  responseEnd,
  type HelloAckMessage,
  type HelloFields,
  type Json,
  type ProviderMessage,
} from '@poolcoord/protocol'
import WebSocket from 'ws'
import type { Logger } from './logger.js'
import type { BackendCall, BackendClient, BackendResult } from './backend-client.js'
import { FrameWriter, maskOption } from './frame-writer.js'

export type { HelloFields }

/** The ack as the agent keeps it; a token appears only when one was minted for a tokenless connect. */
export type HelloAck = Omit<HelloAckMessage, 'type' | 'coordinator_version'>

export interface SessionClosed {
  /** The close code, or null when the upgrade failed (refused, HTTP 429 or 503, no answer). */
  code: number | null
  reason: string
  withToken: boolean
  /** When hello_ack arrived, or null if it never did. */
  admittedAt: number | null
  /** Identity v2 was offered and the coordinator does not speak it (no subprotocol selected, or 4000 to auth_init). */
  v2Refused: boolean
  /** The challenge's key_state says another intent is needed; the agent reconnects with it at once. */
  switchIntent: IdentityIntent | null
  /** The challenge named an origin other than the one dialled: nothing was signed. */
  originMismatch: string | null
  /** The intent this connection announced, or null for v1. */
  intent: IdentityIntent | null
}

/** Identity v2: what a connection proves. */
export interface SessionIdentity {
  key: IdentityKeyPair
  next: IdentityKeyPair | null
  intent: IdentityIntent
  /** The challenge's key_state may send the agent back for another intent (false: prove this one anyway). */
  maySwitch: boolean
}

export interface SessionOptions {
  url: string
  token: string | null
  hello: HelloFields
  /** The agent's one backend client (its keep-alive pool), shared by its sockets. */
  backend: BackendClient
  log: Logger
  /** Requests in flight on every socket of this agent; the heartbeat reports what is left. */
  slots: { active: number; readonly max: number }
  now: () => number
  onAck: (ack: HelloAck, session: AgentSession) => void
  /** null speaks protocol v1 (a hello with the bearer alone). */
  identity: SessionIdentity | null
}

const HANDSHAKE_TIMEOUT_MS = 15_000
/** How stale a report of free slots may get while the coordinator still has one to route to. */
const SLOT_REPORT_MS = 100
/** An inference_request may be 4 MiB (protocol §4.1); leave room for JSON escaping. */
const MAX_INBOUND_FRAME = 2 * MAX_INFERENCE_REQUEST_BYTES

export class AgentSession {
  readonly closed: Promise<SessionClosed>
  ack: HelloAck | null = null
  /** No new work: a `drain` arrived, or the agent is stopping. */
  draining = false
  /**
   * Reported `busy` while the agent saves a minted token and swaps to a bearer socket, so that
   * the coordinator sends no request the swap would cut off.
   */
  holding = false
  private readonly ws: WebSocket
  private readonly running = new InFlightTable<BackendCall>()
  private readonly writer: FrameWriter
  /** The coordinator takes a non-streamed answer's last piece in the end frame (hello_ack features). */
  private endData = false
  private heartbeatTimer: NodeJS.Timeout | null = null
  private heartbeatQueued = false
  /** slots_free of the last heartbeat sent; -1 before the first. */
  private reportedFree = -1
  private slotReportTimer: NodeJS.Timeout | null = null
  private admittedAt: number | null = null
  private lastInboundAt = 0
  private v2Refused = false
  private switchIntent: IdentityIntent | null = null
  private originMismatch: string | null = null
  /** The auth_init frame exactly as sent: the proof signs its digest. */
  private initText: string | null = null
  private challenged = false

  constructor(private readonly o: SessionOptions) {
    const headers: Record<string, string> = o.token ? { authorization: authorizationHeader(o.token) } : {}
    const protocols = o.identity === null ? [] : [SUBPROTOCOL_V2]
    this.ws = new WebSocket(o.url, protocols, {
      headers,
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
      maxPayload: MAX_INBOUND_FRAME,
      perMessageDeflate: false,
      ...maskOption(o.url),
    })
    this.writer = new FrameWriter(this.ws, this.queuedHeartbeat)
    // ws aborts the handshake when the coordinator selects no subprotocol: note why first.
    this.ws.on('upgrade', (res) => {
      this.writer.attach(res.socket)
      if (o.identity !== null && res.headers['sec-websocket-protocol'] !== SUBPROTOCOL_V2) this.v2Refused = true
    })
    this.closed = new Promise((resolve) => {
      let status: number | null = null
      this.ws.on('unexpected-response', (_req, res) => {
        status = res.statusCode ?? null
        res.resume()
        this.ws.terminate()
      })
      this.ws.on('error', (err) => o.log.debug({ event: 'agent.socket_error', err }, 'socket error'))
      this.ws.on('close', (code, reason) => {
        this.stopHeartbeats()
        for (const call of this.running.values()) call.cancel()
        const opened = code !== 1006 || this.admittedAt !== null
        // A coordinator older than identity v2 that selected the subprotocol anyway answers auth_init with 4000.
        if (o.identity !== null && !this.challenged && code === Close.notHello.code) this.v2Refused = true
        resolve({
          code: status === null && opened ? code : null,
          reason: status !== null ? `HTTP ${status}` : reason.toString('utf8').slice(0, 123),
          withToken: o.token !== null,
          admittedAt: this.admittedAt,
          v2Refused: this.v2Refused,
          switchIntent: this.switchIntent,
          originMismatch: this.originMismatch,
          intent: o.identity?.intent ?? null,
        })
      })
    })
    const ackTimer = setTimeout(() => this.ack === null && this.ws.terminate(), HANDSHAKE_TIMEOUT_MS)
    void this.closed.then(() => clearTimeout(ackTimer))
    this.ws.on('open', () => {
      if (o.identity === null) return void this.send(hello(o.hello))
      const init = authInit(o.hello, {
        identity_key: o.identity.key.publicKey,
        intent: o.identity.intent,
        next_identity_key: o.identity.next?.publicKey ?? null,
      })
      this.initText = encode(init)
      this.writer.send(this.initText)
    })
    this.ws.on('pong', () => (this.lastInboundAt = o.now()))
    this.ws.on('message', (data, isBinary) => {
      this.lastInboundAt = o.now()
      if (isBinary) return
      // Only objects are frames; anything else (null, a number, an array) is ignored, not a crash.
      const msg = decodeJson(data as Buffer)
      if (msg === null) return
      if (this.ack === null) this.onHandshake(msg)
      else this.onFrame(msg)
    })
  }

  get withToken(): boolean {
    return this.o.token !== null
  }

  /** Identity v2: what this connection announced; null for v1. */
  get identity(): SessionIdentity | null {
    return this.o.identity
  }

  close(code = 1000, reason = 'provider_stopping'): void {
    this.ws.close(code, reason)
  }

  /** How many requests this socket is serving. */
  get inFlight(): number {
    return this.running.size
  }

  /** Tell the coordinator now: after a slot frees, on drain. Coalesced to one frame per tick. */
  heartbeatSoon(): void {
    if (this.heartbeatQueued || this.ack === null) return
    this.heartbeatQueued = true
    this.writer.atTurnEnd()
  }

  /** At the end of each turn that wrote: the queued heartbeat, so that it leaves with the turn's frames. */
  private readonly queuedHeartbeat = (): void => {
    if (!this.heartbeatQueued) return
    this.heartbeatQueued = false
    this.heartbeat()
  }

  private send(msg: ProviderMessage): Promise<void> | undefined {
    return this.writer.send(encode(msg))
  }

  /**
   * Identity v2's challenge: check the origin before signing anything (a coordinator relaying
   * another's challenge names that other origin), switch intent when key_state says so, else
   * sign and send the one proof.
   */
  private onChallenge(msg: Json, id: SessionIdentity): void {
    this.challenged = true
    const parsed = parseAuthChallenge(msg)
    if (!parsed.ok) return void this.ws.close(1000, 'bad_challenge')
    const c = parsed.value
    const dialled = new URL(this.o.url).origin
    if (c.origin !== dialled) {
      this.originMismatch = c.origin
      return void this.ws.close(1000, 'origin_mismatch')
    }
    if (id.maySwitch) {
      // No pin (never enrolled here, or reset-identity cleared it): enroll; a pin where we meant to enroll: recover.
      if (id.intent !== 'enroll' && c.key_state === 'unknown') this.switchIntent = 'enroll'
      else if (id.intent === 'enroll' && c.key_state === 'pinned' && this.o.token === null) this.switchIntent = 'recover'
      if (this.switchIntent !== null) return void this.ws.close(1000, 'intent_switch')
    }
    const bytes = provedBytes({
      origin: c.origin,
      intent: id.intent,
      providerId: this.o.hello.provider_id,
      identityKey: id.key.publicKey,
      nextIdentityKey: id.next?.publicKey ?? null,
      challengeId: c.challenge_id,
      nonce: c.nonce,
      issuedAt: c.issued_at,
      initSha256: sha256Hex(this.initText as string),
    })
    this.send(authProof(c.challenge_id, signProof(id.key, bytes)))
  }

  private onHandshake(msg: Json): void {
    if (this.o.identity !== null && !this.challenged) {
      if (msg.type === 'auth_challenge') this.onChallenge(msg, this.o.identity)
      return
    }
    const parsed = parseHelloAck(msg)
    if (!parsed.ok) return
    const a = parsed.value
    // A token is taken only as protocol §2.2 and §2.4 give one: minted for a tokenless v1
    // connect, or for a key-proven connection (enrolled, recovered or renewed).
    const selfMinted = this.o.token === null && a.auth_state === 'self_minted'
    const keyed = this.o.identity !== null && a.auth_state === 'key_proven'
    const minted = selfMinted || keyed ? a.assigned_provider_token : undefined
    this.ack = {
      assigned_id: a.assigned_id,
      auth_state: a.auth_state,
      heartbeat_interval_s: Math.min(300, a.heartbeat_interval_s),
      ...(minted !== undefined ? { assigned_provider_token: minted } : {}),
      ...(a.identity_generation !== undefined ? { identity_generation: a.identity_generation } : {}),
      ...(a.features !== undefined ? { features: a.features } : {}),
    }
    // Offered on this connection only: a feature is never assumed from an earlier ack (protocol §2.2).
    this.endData = a.features?.includes(FEATURE_END_DATA) === true
    this.admittedAt = this.o.now()
    // Only a self-minted token must be proven before the agent relies on it (§2.2); a key-pinned id recovers by key.
    this.holding = selfMinted && minted !== undefined
    this.heartbeat()
    this.heartbeatTimer = setInterval(() => this.tick(), this.ack.heartbeat_interval_s * 1000)
    this.o.onAck(this.ack, this)
  }

  private onFrame(raw: Json): void {
    const parsed = parseCoordinatorMessage(raw)
    // A malformed frame is ignored rather than answered with a close: the agent keeps serving.
    // null is a type this agent does not know: that is how protocol additions roll out.
    if (!parsed.ok || parsed.value === null) return
    const msg = parsed.value
    switch (msg.type) {
      case 'inference_request':
        this.serve(msg.request_id, msg.stream, msg.body)
        return
      case 'cancel_request':
        this.running.get(msg.request_id)?.cancel()
        return
      case 'drain':
        this.o.log.info({ event: 'agent.drain_requested' }, 'the coordinator asked this provider to drain; finishing requests in flight')
        this.draining = true
        this.heartbeatSoon()
        return
      case 'hello_ack':
        return
    }
  }

  /**
   * Every heartbeat interval: a heartbeat and a ping. A coordinator that answered nothing, not
   * even the ping, for two intervals is gone (a dead host, a dropped NAT entry), and the socket
   * is cut instead of waiting for TCP to give up, which takes many minutes.
   */
  private tick(): void {
    const intervalMs = this.ack!.heartbeat_interval_s * 1000
    if (this.o.now() - this.lastInboundAt > 2 * intervalMs + 5000) {
      this.o.log.warn({ event: 'agent.coordinator_silent' }, 'no frame or pong from the coordinator for two heartbeat intervals; reconnecting')
      this.ws.terminate()
      return
    }
    this.heartbeat()
    if (this.ws.readyState === WebSocket.OPEN) this.ws.ping()
  }

  private heartbeat(): void {
    const { active, max } = this.o.slots
    const status = this.draining ? 'draining' : this.holding ? 'busy' : 'ready'
    this.reportedFree = Math.max(0, max - active)
    this.send(heartbeat(status, max, this.reportedFree))
  }

  /**
   * A request ended. The coordinator routes here while the last report said a slot was free,
   * counting its own requests against max_concurrency (protocol §4.1); beyond that, the count
   * only ranks this provider among others. So a freed slot is reported at once only when the last
   * report said none was free, and otherwise within SLOT_REPORT_MS: a heartbeat per request would
   * cost both sides a frame per request for a ranking a moment fresher (issue 16).
   */
  private slotFreed(): void {
    if (this.reportedFree <= 0) return this.heartbeatSoon()
    if (this.slotReportTimer !== null) return
    this.slotReportTimer = setTimeout(() => {
      this.slotReportTimer = null
      this.heartbeatSoon()
    }, SLOT_REPORT_MS)
  }

  /**
   * An error_queue_full end makes the coordinator treat this provider as busy until its next
   * heartbeat (buyer-api.md §4): the slot this frees is then reported at once, not within
   * SLOT_REPORT_MS, or the pool would have no one to route to in between.
   */
  private refusedAsFull(): void {
    this.reportedFree = 0
  }

  private stopHeartbeats(): void {
    if (this.heartbeatTimer !== null) clearInterval(this.heartbeatTimer)
    this.heartbeatTimer = null
    if (this.slotReportTimer !== null) clearTimeout(this.slotReportTimer)
    this.slotReportTimer = null
  }

  private serve(requestId: string, stream: boolean, body: string): void {
    if (this.running.has(requestId)) return
    if (this.draining || this.o.slots.active >= this.o.slots.max) {
      this.send(responseEnd(requestId, 'error_queue_full'))
      this.refusedAsFull()
      return
    }
    this.o.slots.active++
    let seq = 0
    const started = this.o.now()
    // Without end_data (an older coordinator) the answer goes as chunks and a bare end, as always.
    const call = this.o.backend.forward(body, stream, (data) => this.send(responseChunk(requestId, seq++, data)), this.endData)
    this.running.set(requestId, call)
    void call.result.then((result) => {
      try {
        this.finished(requestId, call, result, stream, started)
      } finally {
        this.running.delete(requestId)
        this.o.slots.active--
        this.slotFreed()
      }
    })
  }

  private finished(requestId: string, call: BackendCall, result: BackendResult, stream: boolean, started: number): void {
    // A cancelled request needs no end: the coordinator already dropped it.
    if (result.status !== 'cancelled' && !call.cancelled) {
      void this.send(responseEnd(requestId, result.status, { usage: result.usage, errorCode: result.errorCode, data: result.data }))
      if (result.status === 'error_queue_full') this.refusedAsFull()
    }
    // The log line is built only when it is written: this runs once per request.
    if (!this.o.log.isLevelEnabled('info')) return
    this.o.log.info(
      {
        event: 'agent.request_finished',
        request_id: requestId,
        status: call.cancelled ? 'cancelled' : result.status,
        stream,
        ms: this.o.now() - started,
        usage: result.usage ?? undefined,
      },
      'request finished',
    )
  }
}
