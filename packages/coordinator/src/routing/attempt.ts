import type { CancelReason, ResponseEndMessage } from '@poolcoord/protocol'
import type { ProviderSession } from '../pool/provider-session.js'

export type AttemptEvent =
  | { kind: 'chunk'; data: string }
  | { kind: 'end'; end: ResponseEndMessage }
  /** The provider's socket closed with the request unfinished, or (cluster mode) its node went silent. */
  | { kind: 'lost' }
  /** Cluster mode: the provider's node turned the attempt down before the provider saw it. */
  | { kind: 'refused' }

export interface DispatchRequest {
  requestId: string
  /** The inference_request frame, built once per request and reused on failover. */
  frame: string
}

/** The exchange's hold on one attempt: it can only withdraw it. */
export interface AttemptHandle {
  readonly session: ProviderSession
  /** Sends cancel_request if the provider can still hear it, and gives the slot back. Idempotent. */
  cancel(reason: CancelReason): void
}

/**
 * Where an exchange runs its attempts. The exchange (exchange.ts) depends on this interface
 * alone, so that a provider reached some other way can serve beside the local sockets: today the
 * only target is the Dispatcher (a provider on this node's sockets); cluster mode adds one for a
 * provider on another node.
 */
export interface AttemptTarget {
  /**
   * Starts one attempt on `session` and reports it through `onEvent` until its end or loss.
   * Returns null, having taken nothing, when the session cannot take it now.
   */
  dispatch(session: ProviderSession, req: DispatchRequest, onEvent: (e: AttemptEvent) => void): AttemptHandle | null
}
