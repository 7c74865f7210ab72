import { Close, drain, encode } from '@poolcoord/protocol'
import type { Logger } from '../logger.js'
import type { ProviderLink } from './provider-link.js'
import type { ProviderSession } from './provider-session.js'
import type { Registry } from './registry.js'

/** What drain and kick act on: the pool, and a way to wait until a session has no request. */
export interface PoolControlDeps {
  readonly registry: Registry<ProviderLink>
  readonly dispatcher: { whenIdle(session: ProviderSession): Promise<void> }
  readonly log: Logger
}

/**
 * Operator and shutdown actions on one live session. A drain stops new work at once (routing
 * checks drainRequested, which the provider's heartbeats cannot clear), tells the provider,
 * and closes the connection (1000 `drained`) once its last request has ended. Returns false
 * when the session is no longer the current one for its id.
 */
export function drainSession(deps: PoolControlDeps, session: ProviderSession, opts: { close: boolean }): boolean {
  const { providerId, assignedId } = session
  const link = deps.registry.handle(providerId, assignedId)
  if (link === undefined || !deps.registry.requestDrain(providerId, assignedId)) return false
  if (link.open) link.send(encode(drain()))
  deps.log.info({ event: 'provider.drain', provider_id: providerId, assigned_id: assignedId, in_flight: session.inFlight }, 'draining provider')
  if (opts.close) {
    void deps.dispatcher.whenIdle(session).then(() => deps.registry.handle(providerId, assignedId)?.close(Close.drained))
  }
  return true
}

/** Closes the session now (4007 `kicked`). Requests in flight on it fail over or fail. */
export function kickSession(deps: PoolControlDeps, session: ProviderSession): boolean {
  const { providerId, assignedId } = session
  const link = deps.registry.handle(providerId, assignedId)
  if (link === undefined) return false
  // Out of the pool first, so that no request is dispatched to it while the close completes.
  deps.registry.remove(providerId, assignedId)
  deps.log.warn({ event: 'provider.kicked', provider_id: providerId, assigned_id: assignedId, in_flight: session.inFlight }, 'kicking provider')
  link.close(Close.kicked)
  return true
}
