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
  FEATURE_END_DATA,
  decodeJson,
  encode,
  helloAck,
  parseAuthInit,
  parseAuthProof,
  parseHello,
  withField,
  type CloseSpec,
  type HelloFields,
} from '@poolcoord/protocol'
import { helloOf } from '../pool/provider-report.js'
import type { ValidatedToken } from '../tokens/token-store.js'
import { KeyChallenge } from './key-handshake.js'
import { closeSocket, socketLink } from './socket-link.js'
import { closeForOutcome } from './outcome-close.js'
import type { BucketTake } from '../limits/rate-bucket-store.js'
import { onSessionFrame } from './session-frame.js'

/** What every hello_ack offers (specs/protocol.md §2.2): answers may end in their end frame. */
const COORDINATOR_FEATURES: readonly string[] = [FEATURE_END_DATA]

export type UpgradeAuth = { kind: 'reject'; outcome: AdmissionOutcome } | { kind: 'tokenless' } | ({ kind: 'bearer'; writeEpoch: number } & ValidatedToken)

export interface ConnectionOptions {
  auth: UpgradeAuth
  peer: string
  /** Gives back the pre-auth slot; called once the connection is admitted or gone. */
  release: () => void
  /** The first frame arrived (the pending limiter then prefers to cut silent connections). */
  firstFrame: () => void
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
  /** Gives back the admitted session's place in its address's count. */
  let releaseCount: (() => void) | null = null
  // One deadline from the upgrade to our hello_ack, whatever the time went on: a queue behind
  // other hellos for the id, a hung store, a slow proof. Past it the socket closes and the slot,
  // the challenge and any admission still running are released (an admission that finishes later
  // finds the socket gone and undoes what it wrote).
  const deadlineTimer = setTimeout(
    () => {
      if (phase === 'admitted' || phase === 'closed') return
      if (phase === 'awaiting_hello') {
        ctx.metrics.admission('admission.hello_timeout')
        ctx.log.warn({ event: 'admission.hello_timeout', peer: opts.peer }, 'no hello in time')
        closeSocket(ws, Close.helloTimeout)
        // The slot is free now, not when a peer that ignores the close frame lets go.
        return opts.release()
      }
      ctx.metrics.admission('admission.deadline')
      ctx.log.warn({ event: 'admission.deadline', peer: opts.peer, phase, deadline_ms: limits.admissionDeadlineMs }, 'admission did not finish in time')
      closeSocket(ws, Close.admissionTimeout)
      opts.release()
    },
    Math.max(0, limits.admissionDeadlineMs - (performance.now() - opts.startedAt)),
  )

  ws.on('error', (err) => ctx.log.debug({ err, peer: opts.peer }, 'provider socket error'))
  ws.on('close', (code) => {
    const was = phase
    phase = 'closed'
    clearTimeout(helloTimer)
    clearTimeout(deadlineTimer)
    opts.release()
    releaseCount?.()
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
    clearTimeout(deadlineTimer)
    ctx.metrics.admission(opts.auth.outcome)
    ctx.log.warn({ event: opts.auth.outcome, peer: opts.peer }, 'provider upgrade rejected')
    closeSocket(ws, Close.invalidToken)
    return opts.release()
  }
  const auth = opts.auth

  helloTimer = setTimeout(
    () => {
      if (phase !== 'awaiting_hello') return
      ctx.metrics.admission('admission.hello_timeout')
      ctx.log.warn({ event: 'admission.hello_timeout', peer: opts.peer }, 'no hello in time')
      closeSocket(ws, Close.helloTimeout)
      opts.release()
    },
    Math.max(0, limits.helloTimeoutMs - (performance.now() - opts.startedAt)),
  )

  ws.on('message', (data: RawData, isBinary: boolean) => {
    if (ws.readyState !== ws.OPEN) return // closing: a late hello must not start an admission
    if (phase === 'admitted' && session !== null) return onSessionFrame(ctx, ws, session, lease, data, isBinary)
    if (phase === 'challenged' && challenge !== null) {
      phase = 'admitting'
      clearTimeout(helloTimer)
      return void onProof(challenge, data, isBinary)
    }
    if (phase !== 'awaiting_hello') return // frames before our ack are not part of the protocol
    phase = 'admitting'
    opts.firstFrame()
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
    // A tokenless hello may mint: the limits come before any store work (specs/admission.md §7).
    let charged: readonly BucketTake[] = []
    if (auth.kind === 'tokenless') {
      const m = await mayMint(parsed.value.provider_id, true)
      if (m === null) return
      charged = m
    }
    if (phase !== 'admitting' || ws.readyState !== ws.OPEN) return
    await admitAndAck(parsed.value, null, charged)
  }

  /**
   * The checks every credential-less admission passes before the store is touched: room in the
   * address's session count, then the mint buckets. False when the socket was closed.
   */
  async function mayMint(providerId: string, unproven: boolean): Promise<readonly BucketTake[] | null> {
    if (!ctx.prefixSessions.hasRoom(opts.peer, unproven) && ctx.registry.get(providerId) === undefined) {
      return (reject('admission.prefix_full', { provider_id: providerId }, Close.prefixFull), null)
    }
    let v
    try {
      v = await ctx.mintLimiter.takeMint(opts.peer, ctx.clock.now())
    } catch (err) {
      ctx.log.error({ err, provider_id: providerId }, 'mint rate limit could not be checked; failing closed')
      return (reject('admission.limiter_error', { provider_id: providerId }), null)
    }
    if (v.ok) return v.charged
    reject(
      'admission.mint_rate_limited',
      { provider_id: providerId, bucket: v.bucket, retry_after_s: Math.ceil(v.retryAfterMs / 1000), local: v.local },
      Close.mintRateLimited,
    )
    return null
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
    // A tokenless enroll mints: limited before the lookup and before any signature is verified.
    if (auth.kind === 'tokenless' && init.intent === 'enroll' && (await mayMint(init.provider_id, false)) === null) return
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
    // The proof has until the admission deadline, at most CHALLENGE_TTL_MS; the challenge says how long.
    const ttlMs = Math.max(1, Math.min(CHALLENGE_TTL_MS, Math.floor(limits.admissionDeadlineMs - (performance.now() - opts.startedAt))))
    // No timer of its own: the admission deadline closes a connection whose proof never comes.
    challenge = new KeyChallenge(init, Buffer.from(bytes), opts.origin, ctx.clock.now(), ttlMs)
    phase = 'challenged'
    ws.send(encode(challenge.frame(pinned ? 'pinned' : 'unknown')))
  }

  async function onProof(ch: KeyChallenge, data: RawData, isBinary: boolean): Promise<void> {
    const parsed = parseAuthProof(isBinary || rawSize(data) > limits.maxHelloBytes ? null : decodeJson(data as Buffer))
    const verdict = parsed.ok ? await ch.check(parsed.value, ctx.clock.now()) : 'malformed'
    // A late proof is a timeout, not a refused credential: an agent holding a token must not read
    // it as one and spend a recovery (its challenge may have had little of the deadline left).
    if (verdict === 'expired') return reject('admission.challenge_expired', { provider_id: ch.init.provider_id, reason: verdict }, Close.admissionTimeout)
    if (verdict !== 'ok') return reject('admission.proof_invalid', { provider_id: ch.init.provider_id, reason: verdict })
    if (phase !== 'admitting' || ws.readyState !== ws.OPEN) return
    await admitAndAck(ch.init, { intent: ch.init.intent, key: ch.init.identity_key, nextKey: ch.init.next_identity_key ?? null })
  }

  async function admitAndAck(
    fields: HelloFields,
    key: { intent: KeyIntent; key: string; nextKey: string | null } | null,
    mintCharged: readonly BucketTake[] = [],
  ): Promise<void> {
    const hello = helloOf(fields)
    let result
    try {
      result = await admit(ctx, {
        hello,
        key,
        bearer: auth.kind === 'bearer' ? auth : null,
        peer: opts.peer,
        mintCharged,
        link: socketLink(ws),
        isOpen: () => phase === 'admitting' && ws.readyState === ws.OPEN,
      })
    } catch (err) {
      ctx.log.error({ err, provider_id: hello.providerId }, 'admission failed; failing closed')
      return closeSocket(ws, Close.invalidToken)
    }
    if (!result.ok) return closeSocket(ws, closeForOutcome(result.outcome))
    session = result.session
    lease = result.lease
    releaseCount = result.releaseCount
    phase = 'admitted'
    clearTimeout(deadlineTimer)
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
          features: [...COORDINATOR_FEATURES],
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

  /** A refusal before the admission ran: 4005 for every credential failure, and nothing was written. */
  function reject(outcome: AdmissionOutcome, fields: Record<string, unknown> = {}, close: CloseSpec = Close.invalidToken): void {
    ctx.metrics.admission(outcome)
    ctx.log[outcome === 'admission.limiter_error' ? 'error' : 'warn']({ event: outcome, peer: opts.peer, ...fields }, 'provider admission refused')
    closeSocket(ws, close)
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
