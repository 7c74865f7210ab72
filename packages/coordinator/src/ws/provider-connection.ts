import type { RawData, WebSocket } from 'ws'
import { admit } from '../admission/admit.js'
import type { AppContext } from '../app-context.js'
import type { AdmissionOutcome } from '../admission/admission-outcome.js'
import type { ProviderSession } from '../pool/provider-session.js'
import type { SessionRef } from '../cluster/lease-value.js'
import type { IdentityIntent as KeyIntent } from '@poolcoord/protocol'
import {
  CHALLENGE_TTL_MS,
  Close,
  MAX_FRAME_DEPTH,
  MAX_FRAME_TOKENS,
  frameShape,
  decodeJson,
  encode,
  helloAck,
  parseAuthInit,
  parseAuthProof,
  parseHello,
  parseProviderMessage,
  withField,
  type CloseSpec,
  type HelloFields,
} from '@poolcoord/protocol'
import { heartbeatOf, helloOf } from '../pool/provider-report.js'
import type { ValidatedToken } from '../tokens/token-store.js'
import { KeyChallenge } from './key-handshake.js'
import { closeSocket, socketLink } from './socket-link.js'

export type UpgradeAuth = { kind: 'reject'; outcome: AdmissionOutcome } | { kind: 'tokenless' } | ({ kind: 'bearer'; writeEpoch: number } & ValidatedToken)

export interface ConnectionOptions {
  auth: UpgradeAuth
  peer: string
  /** Gives back the pre-auth slot; called once the connection is admitted or gone. */
  release: () => void
  /** performance.now() at the upgrade: the hello deadline counts from there. */
  startedAt: number
  /** The provider offered, and we selected, the `poolcoord.v2` subprotocol: its first frame must be auth_init. */
  v2: boolean
  /** The origin every v2 proof on this coordinator signs (COORD_PUBLIC_ORIGIN). */
  origin: string
}

/**
 * One provider socket from upgrade to close: hello within the deadline, admission, hello_ack,
 * then heartbeats. The session is removed from the pool on close, keyed by both ids, so a late
 * close of a replaced socket never removes its successor.
 */
export function handleProviderConnection(ctx: AppContext, ws: WebSocket, opts: ConnectionOptions): void {
  const { limits } = ctx.config
  let phase: 'awaiting_hello' | 'challenged' | 'admitting' | 'admitted' | 'closed' = 'awaiting_hello'
  /** Identity v2: the one challenge of this connection, once auth_init has arrived. */
  let challenge: KeyChallenge | null = null
  let session: ProviderSession | null = null
  /** Cluster mode: the lease the session holds. */
  let lease: SessionRef | null = null
  let helloTimer: NodeJS.Timeout | undefined

  ws.on('error', (err) => ctx.log.debug({ err, peer: opts.peer }, 'provider socket error'))
  ws.on('close', (code) => {
    const was = phase
    phase = 'closed'
    clearTimeout(helloTimer)
    opts.release()
    if (was === 'admitted' && session !== null) {
      const removed = ctx.registry.remove(session.providerId, session.assignedId)
      // Keyed by the session: a late close of a replaced socket leaves its successor's lease alone.
      if (lease !== null) ctx.cluster?.keeper.release(session.providerId, lease)
      // After the removal, so that a failover cannot pick this session again.
      const activity = ctx.dispatcher.onSessionClosed(session)
      ctx.metrics.providerDisconnect(activity)
      ctx.log.info(
        { event: 'provider.disconnected', provider_id: session.providerId, assigned_id: session.assignedId, code, removed, activity },
        'provider disconnected',
      )
    }
  })

  if (opts.auth.kind === 'reject') {
    ctx.metrics.admission(opts.auth.outcome)
    ctx.log.warn({ event: opts.auth.outcome, peer: opts.peer }, 'provider upgrade rejected')
    return closeSocket(ws, Close.invalidToken)
  }
  const auth = opts.auth

  helloTimer = setTimeout(
    () => {
      if (phase !== 'awaiting_hello') return
      ctx.metrics.admission('admission.hello_timeout')
      ctx.log.warn({ event: 'admission.hello_timeout', peer: opts.peer }, 'no hello in time')
      closeSocket(ws, Close.helloTimeout)
    },
    Math.max(0, limits.helloTimeoutMs - (performance.now() - opts.startedAt)),
  )

  ws.on('message', (data: RawData, isBinary: boolean) => {
    if (ws.readyState !== ws.OPEN) return // closing: a late hello must not start an admission
    if (phase === 'admitted' && session !== null) return onSessionFrame(session, data, isBinary)
    if (phase === 'challenged' && challenge !== null) {
      phase = 'admitting'
      clearTimeout(helloTimer)
      return void onProof(challenge, data, isBinary)
    }
    if (phase !== 'awaiting_hello') return // frames before our ack are not part of the protocol
    phase = 'admitting'
    clearTimeout(helloTimer)
    void (opts.v2 ? onAuthInit(data, isBinary) : onHello(data, isBinary))
  })

  /** The size and pool checks every first frame passes; false when the socket was closed. */
  function firstFrameOk(data: RawData, isBinary: boolean): boolean {
    if (isBinary) return (refuse(Close.notHello), false)
    if (rawSize(data) > limits.maxHelloBytes) return (refuse(withField(Close.invalidHello, 'size')), false)
    return true
  }

  function poolFull(providerId: string): boolean {
    if (ctx.registry.size < limits.maxSessions || ctx.registry.get(providerId) !== undefined) return false
    ctx.metrics.admission('admission.pool_full')
    ctx.log.warn({ event: 'admission.pool_full', provider_id: providerId }, 'pool is at its session limit')
    closeSocket(ws, Close.poolFull)
    return true
  }

  async function onHello(data: RawData, isBinary: boolean): Promise<void> {
    if (!firstFrameOk(data, isBinary)) return
    const parsed = parseHello(decodeJson(data as Buffer))
    if (!parsed.ok) return refuse(parsed.close)
    if (poolFull(parsed.value.provider_id)) return
    await admitAndAck(parsed.value, null)
  }

  /**
   * Identity v2's first frame: answer with a challenge, bound to this connection and to the
   * frame's exact bytes. The proof then has CHALLENGE_TTL_MS.
   */
  async function onAuthInit(data: RawData, isBinary: boolean): Promise<void> {
    if (!firstFrameOk(data, isBinary)) return
    const bytes = data as Buffer
    const parsed = parseAuthInit(decodeJson(bytes))
    if (!parsed.ok) return refuse(parsed.close)
    const init = parsed.value
    if (poolFull(init.provider_id)) return
    // Under require_provider_tokens a tokenless v2 connect exists only to recover.
    if (auth.kind === 'tokenless' && init.intent !== 'recover' && ctx.live.get().requireProviderTokens) return reject('admission.tokens_required')
    // key_state tells the agent whether to enroll or recover. A bearer's upgrade already read the
    // pin of the id it is bound to; it is the one that matters unless the frame names another id.
    let pinned: boolean
    if (auth.kind === 'bearer' && auth.providerId === init.provider_id) pinned = auth.pin !== null
    else {
      try {
        pinned = (await ctx.identities.get(init.provider_id)) !== null
      } catch (err) {
        ctx.log.error({ err, provider_id: init.provider_id }, 'identity key lookup failed; failing closed')
        return reject('admission.store_error')
      }
    }
    if (phase !== 'admitting' || ws.readyState !== ws.OPEN) return
    challenge = new KeyChallenge(init, Buffer.from(bytes), opts.origin, ctx.clock.now())
    phase = 'challenged'
    helloTimer = setTimeout(() => phase === 'challenged' && reject('admission.challenge_expired'), CHALLENGE_TTL_MS)
    ws.send(encode(challenge.frame(pinned ? 'pinned' : 'unknown')))
  }

  async function onProof(ch: KeyChallenge, data: RawData, isBinary: boolean): Promise<void> {
    const parsed = parseAuthProof(isBinary || rawSize(data) > limits.maxHelloBytes ? null : decodeJson(data as Buffer))
    const verdict = parsed.ok ? await ch.check(parsed.value, ctx.clock.now()) : 'malformed'
    if (verdict !== 'ok')
      return reject(verdict === 'expired' ? 'admission.challenge_expired' : 'admission.proof_invalid', { provider_id: ch.init.provider_id, reason: verdict })
    if (phase !== 'admitting' || ws.readyState !== ws.OPEN) return
    await admitAndAck(ch.init, { intent: ch.init.intent, key: ch.init.identity_key, nextKey: ch.init.next_identity_key ?? null })
  }

  async function admitAndAck(fields: HelloFields, key: { intent: KeyIntent; key: string; nextKey: string | null } | null): Promise<void> {
    const hello = helloOf(fields)
    let result
    try {
      result = await admit(ctx, {
        hello,
        key,
        bearer: auth.kind === 'bearer' ? auth : null,
        peer: opts.peer,
        link: socketLink(ws),
        isOpen: () => phase === 'admitting' && ws.readyState === ws.OPEN,
      })
    } catch (err) {
      ctx.log.error({ err, provider_id: hello.providerId }, 'admission failed; failing closed')
      return closeSocket(ws, Close.invalidToken)
    }
    if (!result.ok) {
      return closeSocket(ws, result.outcome === 'admission.busy' ? Close.admissionBusy : Close.invalidToken)
    }
    session = result.session
    lease = result.lease
    phase = 'admitted'
    opts.release()
    result.displaced?.close(Close.replaced)
    ws.send(
      encode(
        helloAck({
          assigned_id: session.assignedId,
          heartbeat_interval_s: limits.heartbeatIntervalS,
          auth_state: session.authState,
          ...(result.token === null ? {} : { assigned_provider_token: result.token }),
          ...(session.identity === null ? {} : { identity_generation: session.identity.generation }),
        }),
      ),
    )
    if (session.leasePending === true && lease !== null) void awaitHandover(session, lease)
  }

  /** Cluster mode: the session routes once the node that held the provider before let go (specs/cluster.md §7.4). */
  async function awaitHandover(s: ProviderSession, ref: SessionRef): Promise<void> {
    const cluster = ctx.cluster
    if (cluster === null) return
    const started = performance.now()
    let closeWith: CloseSpec | null = null
    try {
      const r = await cluster.keeper.awaitRoutable(s.providerId, ref, cluster.handoverPollMs)
      if (ctx.registry.get(s.providerId) !== s) return
      if (r.routable && cluster.isLive()) {
        s.leasePending = false
        ctx.log.info(
          { event: 'cluster.handover_done', provider_id: s.providerId, assigned_id: s.assignedId, waited_ms: Math.round(performance.now() - started) },
          'the previous session let go; routable',
        )
      } else closeWith = r.routable ? Close.nodeFenced : Close.replaced
    } catch (err) {
      if (phase === 'closed') return // the socket left; release() aborted the wait
      ctx.log.error({ err, provider_id: s.providerId }, 'waiting for a handover failed; failing closed')
      closeWith = Close.invalidToken
    }
    if (closeWith !== null && ctx.registry.remove(s.providerId, s.assignedId)) closeSocket(ws, closeWith)
  }

  function onSessionFrame(s: ProviderSession, data: RawData, isBinary: boolean): void {
    if (!ctx.registry.touch(s.providerId, s.assignedId, ctx.clock.now())) return
    if (isBinary) return
    // Before JSON.parse: a frame nested deep or holding very many values would block the event
    // loop while it parses (issue 15); no valid frame comes near either bound.
    const shape = frameShape(data as Buffer, MAX_FRAME_DEPTH, MAX_FRAME_TOKENS)
    if (shape !== 'ok') {
      ctx.log.warn(
        { event: 'provider.frame_refused', provider_id: s.providerId, assigned_id: s.assignedId, reason: shape, bytes: rawSize(data) },
        'closing: a frame too costly to parse',
      )
      return closeSocket(ws, withField(Close.invalidFrame, shape))
    }
    const msg = decodeJson(data as Buffer)
    if (msg === null) return closeSocket(ws, withField(Close.invalidFrame, 'json'))
    const parsed = parseProviderMessage(msg)
    if (!parsed.ok) return closeSocket(ws, parsed.close)
    const m = parsed.value
    // null: a type of a newer provider or a later protocol addition, ignored.
    if (m === null) return
    switch (m.type) {
      case 'inference_response_chunk':
        if (!ctx.dispatcher.onChunk(s, m)) closeSocket(ws, withField(Close.invalidFrame, 'seq'))
        return
      case 'inference_response_end':
        return ctx.dispatcher.onEnd(s, m)
      case 'heartbeat': {
        const before = s.status
        ctx.registry.applyHeartbeat(s.providerId, s.assignedId, heartbeatOf(m), ctx.clock.now())
        // The lease carries the status that decides who may replace this session (draining, unavailable).
        if (s.status !== before && lease !== null) ctx.cluster?.keeper.setStatus(s.providerId, lease, () => s.status)
        return
      }
    }
  }

  /** A v2 handshake failure: always 4005, whatever went wrong, and nothing was written. */
  function reject(outcome: AdmissionOutcome, fields: Record<string, unknown> = {}): void {
    ctx.metrics.admission(outcome)
    ctx.log.warn({ event: outcome, peer: opts.peer, ...fields }, 'provider identity handshake rejected')
    closeSocket(ws, Close.invalidToken)
  }

  function refuse(spec: CloseSpec): void {
    ctx.metrics.admission('admission.invalid_hello')
    ctx.log.warn({ event: 'admission.invalid_hello', peer: opts.peer, close_code: spec.code, reason: spec.reason }, 'bad hello')
    closeSocket(ws, spec)
  }
}

function rawSize(data: RawData): number {
  if (Array.isArray(data)) return data.reduce((n, b) => n + b.length, 0)
  return data instanceof ArrayBuffer ? data.byteLength : data.length
}
