import {
  ContextLengthExceededError,
  ProviderError,
  ProviderTimeoutError,
  ProviderUnavailableError,
  type CoordinatorError,
} from '../errors.js'
import type { EndStatus } from '@poolcoord/protocol'

/** Why one attempt on one provider failed. */
export type AttemptFailure =
  /** The provider's socket closed with the request unfinished. */
  | 'disconnect'
  /** The chosen session could not take the frame: its socket was closing or not reading. */
  | 'unreachable'
  | 'queue_full'
  | 'model_not_loaded'
  | 'context_exceeded'
  | 'provider_internal'
  /** The provider ended with `cancelled` although we never asked it to. */
  | 'provider_cancelled'
  | 'first_chunk_timeout'

/** A request is tried on at most this many providers: the first, and one failover. */
export const MAX_ATTEMPTS = 2

/**
 * Failures after which the same request may safely run elsewhere: the provider either never got
 * it or said it could not start it. A provider error or a timeout is not retried, because the
 * provider may have done (and may still be doing) the work.
 */
const FAILOVER_ON: ReadonlySet<AttemptFailure> = new Set(['disconnect', 'unreachable', 'queue_full', 'model_not_loaded'])

export interface AttemptState {
  /** Response bytes have reached the buyer. */
  committed: boolean
  /** The buyer pinned a provider with X-Pool-Provider. */
  pinned: boolean
  /** Attempts made so far, including the failed one. */
  attempts: number
}

export function mayFailover(failure: AttemptFailure, s: AttemptState): boolean {
  return FAILOVER_ON.has(failure) && !s.committed && !s.pinned && s.attempts < MAX_ATTEMPTS
}

export function failureOfEnd(status: EndStatus): AttemptFailure | null {
  switch (status) {
    case 'complete':
      return null
    case 'cancelled':
      return 'provider_cancelled'
    case 'error_queue_full':
      return 'queue_full'
    case 'error_context_exceeded':
      return 'context_exceeded'
    case 'error_model_not_loaded':
      return 'model_not_loaded'
    case 'error_internal':
      return 'provider_internal'
  }
}

/** What the buyer is told when the last attempt failed this way. */
export function errorForFailure(failure: AttemptFailure): CoordinatorError {
  switch (failure) {
    case 'unreachable':
    case 'queue_full':
    case 'model_not_loaded':
      return new ProviderUnavailableError()
    case 'context_exceeded':
      return new ContextLengthExceededError()
    case 'first_chunk_timeout':
      return new ProviderTimeoutError()
    case 'disconnect':
    case 'provider_internal':
    case 'provider_cancelled':
      return new ProviderError()
  }
}
