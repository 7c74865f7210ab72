import type { AppContext } from '../context.js'
import type { ProviderSession } from '../pool/provider-session.js'
import { Close } from '../protocol/close-codes.js'
import { closeSocket } from './provider-connection.js'

/**
 * Operator and shutdown actions on one live session. A drain stops new work at once (routing
 * checks drainRequested, which the provider's heartbeats cannot clear), tells the provider,
 * and closes the socket (1000 `drained`) once its last request has ended. Returns false when
 * the session is no longer the current one for its id.
 */
export function drainSession(ctx: AppContext, session: ProviderSession, opts: { close: boolean }): boolean {
  const { providerId, assignedId } = session
  const ws = ctx.registry.handle(providerId, assignedId)
  if (ws === undefined || !ctx.registry.requestDrain(providerId, assignedId)) return false
  if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ type: 'drain' }))
  ctx.log.info({ event: 'provider.drain', provider_id: providerId, assigned_id: assignedId, in_flight: session.inFlight }, 'draining provider')
  if (opts.close) {
    void ctx.dispatcher.whenIdle(session).then(() => {
      const current = ctx.registry.handle(providerId, assignedId)
      if (current !== undefined) closeSocket(current, Close.drained)
    })
  }
  return true
}

/** Closes the session now (4007 `kicked`). Requests in flight on it fail over or fail. */
export function kickSession(ctx: AppContext, session: ProviderSession): boolean {
  const { providerId, assignedId } = session
  const ws = ctx.registry.handle(providerId, assignedId)
  if (ws === undefined) return false
  // Out of the pool first, so that no request is dispatched to it while the close completes.
  ctx.registry.remove(providerId, assignedId)
  ctx.log.warn({ event: 'provider.kicked', provider_id: providerId, assigned_id: assignedId, in_flight: session.inFlight }, 'kicking provider')
  closeSocket(ws, Close.kicked)
  return true
}
