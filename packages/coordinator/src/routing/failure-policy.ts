import {
  ContextLengthExceededError,
  CoordinatorBusyError,
  ProviderError,
  ProviderTimeoutError,
  ProviderUnavailableError,
  type CoordinatorError,
} from '../errors.js'
import { FAILURE_REASONS, type CancelReason, type EndStatus, type FailureReason } from '@poolcoord/protocol'

/** Why one attempt on one provider failed. */
export type AttemptFailure =
  /** The provider's socket closed with the request unfinished. */
  | 'disconnect'
  /** The chosen session could not take the frame: its socket was closing or not reading. */
  | 'unreachable'
  /**
   * Cluster mode: the node that holds the provider's socket turned the attempt down before the
   * provider saw it (our view of its pool was stale: full, replaced, in handover), or that node
   * did not answer. Not the provider's fault.
   */
  | 'refused'
  | 'queue_full'
  | 'model_not_loaded'
  | 'context_exceeded'
  | 'provider_internal'
  /** The provider ended with `cancelled` although we never asked it to. */
  | 'provider_cancelled'
  | 'first_chunk_timeout'

/**
 * Ends the exchange puts to a running attempt itself: the request deadline passed, a held answer
 * grew past maxResponseBytes, or the process-wide buffer budget could not hold it.
 */
export type ImposedEnd = 'request_timeout' | 'response_too_large' | 'coordinator_busy'

export type Failure = AttemptFailure | ImposedEnd

/** A request is tried on at most this many providers: the first, and one failover. */
export const MAX_ATTEMPTS = 2

/**
 * Failures after which the same request may safely run elsewhere: the provider either never got
 * it or said it could not start it. A provider error or a timeout is not retried, because the
 * provider may have done (and may still be doing) the work.
 */
export type FailoverCause = 'disconnect' | 'unreachable' | 'refused' | 'queue_full' | 'model_not_loaded'
const FAILOVER_ON: ReadonlySet<Failure> = new Set<FailoverCause>(['disconnect', 'unreachable', 'refused', 'queue_full', 'model_not_loaded'])

/**
 * Failures that say something about the provider, and so start its cooldown. A provider that
 * holds a request to the deadline is at fault as much as one that fails it. The buffer budget
 * running out and a context the request overflows are not the provider's doing. The list is the
 * protocol's FailureReason, which /poolz shows; typing the set as Set<FailureReason> keeps every
 * entry a Failure.
 */
const PROVIDER_FAULTS: ReadonlySet<Failure> = new Set<FailureReason>(FAILURE_REASONS)

/** What the provider is told when the exchange ends an attempt that is still running. */
const CANCEL_FOR: Partial<Record<Failure, CancelReason>> = {
  first_chunk_timeout: 'timeout',
  request_timeout: 'timeout',
  response_too_large: 'response_too_large',
  coordinator_busy: 'coordinator_busy',
}

export interface RequestState {
  /** Response bytes have reached the buyer. */
  committed: boolean
  /** The buyer pinned a provider with X-Pool-Provider. */
  pinned: boolean
  /** Attempts made so far, including the failed one. */
  attempts: number
}

/** The one answer to a failure: what it does to the provider, and how the request goes on. */
export type Decision = {
  /** What counts against the provider's health (pool/provider-health.ts), or null when nothing does. */
  fault: FailureReason | null
  /** The provider said it is full: send it nothing more until its next heartbeat. */
  markBusy: boolean
  /** Withdraw the attempt with this reason; null when the provider already ended it. */
  cancel: CancelReason | null
} & (
  | {
      action: 'failover'
      reason: FailoverCause
      /** What the buyer gets if no other provider can take the request. */
      error: CoordinatorError
    }
  | { action: 'fail'; error: CoordinatorError }
)

/** Pinned requests never move a provider's health: a buyer could aim them at an honest one. */
export function movesHealth(s: Pick<RequestState, 'pinned'>): boolean {
  return !s.pinned
}

export function decide(failure: Failure, s: RequestState): Decision {
  const effects = {
    fault: isProviderFault(failure) && movesHealth(s) ? failure : null,
    markBusy: failure === 'queue_full',
    cancel: CANCEL_FOR[failure] ?? null,
    error: errorFor(failure),
  }
  if (isFailoverCause(failure) && !s.committed && !s.pinned && s.attempts < MAX_ATTEMPTS) {
    return { ...effects, action: 'failover', reason: failure }
  }
  return { ...effects, action: 'fail' }
}

function isProviderFault(failure: Failure): failure is FailureReason {
  return PROVIDER_FAULTS.has(failure)
}

function isFailoverCause(failure: Failure): failure is FailoverCause {
  return FAILOVER_ON.has(failure)
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

/** What the buyer is told when the request ends with this failure. */
function errorFor(failure: Failure): CoordinatorError {
  switch (failure) {
    case 'unreachable':
    case 'refused':
    case 'queue_full':
    case 'model_not_loaded':
      return new ProviderUnavailableError()
    case 'context_exceeded':
      return new ContextLengthExceededError()
    case 'first_chunk_timeout':
    case 'request_timeout':
      return new ProviderTimeoutError()
    case 'coordinator_busy':
      return new CoordinatorBusyError()
    case 'disconnect':
    case 'provider_internal':
    case 'provider_cancelled':
    case 'response_too_large':
      return new ProviderError()
  }
}
