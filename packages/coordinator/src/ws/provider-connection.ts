import type { RawData, WebSocket } from 'ws'
import { admit } from '../admission/admit.js'
import type { AppContext } from '../app-context.js'
import type { AdmissionOutcome } from '../admission/admission-outcome.js'
import type { ProviderSession } from '../pool/provider-session.js'
import type { SessionRef } from '../cluster/lease-value.js'
import { Close, decodeJson, encode, helloAck, parseHello, parseProviderMessage, withField, type CloseSpec } from '@poolcoord/protocol'
import { heartbeatOf, helloOf } from '../pool/provider-report.js'
import { closeSocket, socketLink } from './socket-link.js'

export type UpgradeAuth = { kind: 'reject'; outcome: AdmissionOutcome } | { kind: 'tokenless' } | { kind: 'bearer'; providerId: string; tokenPrefix: string }

export interface ConnectionOptions {
  auth: UpgradeAuth
  peer: string
  /** Gives back the pre-auth slot; called once the connection is admitted or gone. */
  release: () => void
  /** performance.now() at the upgrade: the hello deadline counts from there. */
  startedAt: number
}

/**
 * One provider socket from upgrade to close: hello within the deadline, admission, hello_ack,
 * then heartbeats. The session is removed from the pool on close, keyed by both ids, so a late
 * close of a replaced socket never removes its successor.
 */
export function handleProviderConnection(ctx: AppContext, ws: WebSocket, opts: ConnectionOptions): void {
  const { limits } = ctx.config
  let phase: 'awaiting_hello' | 'admitting' | 'admitted' | 'closed' = 'awaiting_hello'
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
    if (phase !== 'awaiting_hello') return // frames before our ack are not part of the protocol
    phase = 'admitting'
    clearTimeout(helloTimer)
    void onHello(data, isBinary)
  })

  async function onHello(data: RawData, isBinary: boolean): Promise<void> {
    const size = rawSize(data)
    if (isBinary) return refuse(Close.notHello)
    if (size > limits.maxHelloBytes) return refuse(withField(Close.invalidHello, 'size'))
    const parsed = parseHello(decodeJson(data as Buffer))
    if (!parsed.ok) return refuse(parsed.close)
    const hello = helloOf(parsed.value)
    if (ctx.registry.size >= limits.maxSessions && ctx.registry.get(hello.providerId) === undefined) {
      ctx.metrics.admission('admission.pool_full')
      ctx.log.warn({ event: 'admission.pool_full', provider_id: hello.providerId }, 'pool is at its session limit')
      return closeSocket(ws, Close.poolFull)
    }
    let result
    try {
      result = await admit(ctx, {
        hello,
        bearer: auth.kind === 'bearer' ? { providerId: auth.providerId, tokenPrefix: auth.tokenPrefix } : null,
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
