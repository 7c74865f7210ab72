import type { RawData, WebSocket } from 'ws'
import { Close, MAX_FRAME_DEPTH, MAX_FRAME_TOKENS, decodeJson, frameShape, parseProviderMessage, withField, type CloseSpec } from '@poolcoord/protocol'
import type { AppContext } from '../app-context.js'
import type { SessionRef } from '../cluster/lease-value.js'
import { heartbeatOf } from '../pool/provider-report.js'
import type { ProviderSession } from '../pool/provider-session.js'
import { closeSocket } from './socket-link.js'

/** One frame from an admitted provider: answers, heartbeats, and closing (with a strike) on a broken one. */
export function onSessionFrame(ctx: AppContext, ws: WebSocket, s: ProviderSession, lease: SessionRef | null, data: RawData, isBinary: boolean): void {
  if (!ctx.registry.touch(s.providerId, s.assignedId, ctx.clock.now())) return
  if (isBinary) return
  // Before JSON.parse: a frame nested deep or holding very many values would block the event
  // loop while it parses (issue 15); no valid frame comes near either bound.
  const shape = frameShape(data as Buffer, MAX_FRAME_DEPTH, MAX_FRAME_TOKENS)
  if (shape !== 'ok') {
    ctx.log.warn(
      { event: 'provider.frame_refused', provider_id: s.providerId, assigned_id: s.assignedId, reason: shape, bytes: (data as Buffer).length },
      'closing: a frame too costly to parse',
    )
    return struck(ctx, ws, s, withField(Close.invalidFrame, shape))
  }
  const msg = decodeJson(data as Buffer)
  if (msg === null) return struck(ctx, ws, s, withField(Close.invalidFrame, 'json'))
  const parsed = parseProviderMessage(msg)
  if (!parsed.ok) return struck(ctx, ws, s, parsed.close)
  const m = parsed.value
  // null: a type of a newer provider or a later protocol addition, ignored.
  if (m === null) return
  switch (m.type) {
    case 'inference_response_chunk':
      if (!ctx.dispatcher.onChunk(s, m)) struck(ctx, ws, s, withField(Close.invalidFrame, 'seq'))
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

/**
 * An admitted provider broke the protocol: closed, and charged a strike that outlives the
 * connection (pool/strike-book.ts; /poolz shows it), so a provider that reconnects to do it again
 * carries its record.
 */
function struck(ctx: AppContext, ws: WebSocket, s: ProviderSession, spec: CloseSpec): void {
  const strikes = ctx.strikes.charge(s.providerId, 'invalid_frame', ctx.clock.now())
  ctx.log.warn({ event: 'provider.struck', provider_id: s.providerId, assigned_id: s.assignedId, reason: spec.reason, strikes }, 'provider broke the protocol')
  closeSocket(ws, spec)
}
