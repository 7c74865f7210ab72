import t from 'tap'
import { END_STATUSES } from '@poolcoord/protocol'
import { toPublicError } from '../../src/errors.js'
import { decide, failureOfEnd, type Failure, type RequestState } from '../../src/routing/failure-policy.js'

const FRESH: RequestState = { committed: false, pinned: false, attempts: 1 }
const COMMITTED: RequestState = { ...FRESH, committed: true }
const PINNED: RequestState = { ...FRESH, pinned: true }
const SECOND: RequestState = { ...FRESH, attempts: 2 }

type Row = [
  failure: Failure,
  state: RequestState,
  fault: boolean,
  markBusy: boolean,
  cancel: string | null,
  action: 'failover' | 'fail',
  status: number,
  code: string,
]

const table: Row[] = [
  ['disconnect', FRESH, true, false, null, 'failover', 502, 'provider_error'],
  ['disconnect', COMMITTED, true, false, null, 'fail', 502, 'provider_error'],
  ['disconnect', PINNED, false, false, null, 'fail', 502, 'provider_error'],
  ['disconnect', SECOND, true, false, null, 'fail', 502, 'provider_error'],
  ['unreachable', FRESH, true, false, null, 'failover', 503, 'provider_unavailable'],
  ['unreachable', COMMITTED, true, false, null, 'fail', 503, 'provider_unavailable'],
  ['unreachable', PINNED, false, false, null, 'fail', 503, 'provider_unavailable'],
  ['unreachable', SECOND, true, false, null, 'fail', 503, 'provider_unavailable'],
  ['refused', FRESH, false, false, null, 'failover', 503, 'provider_unavailable'],
  ['refused', COMMITTED, false, false, null, 'fail', 503, 'provider_unavailable'],
  ['refused', PINNED, false, false, null, 'fail', 503, 'provider_unavailable'],
  ['refused', SECOND, false, false, null, 'fail', 503, 'provider_unavailable'],
  ['queue_full', FRESH, true, true, null, 'failover', 503, 'provider_unavailable'],
  ['queue_full', COMMITTED, true, true, null, 'fail', 503, 'provider_unavailable'],
  ['queue_full', PINNED, false, true, null, 'fail', 503, 'provider_unavailable'],
  ['queue_full', SECOND, true, true, null, 'fail', 503, 'provider_unavailable'],
  ['model_not_loaded', FRESH, true, false, null, 'failover', 503, 'provider_unavailable'],
  ['model_not_loaded', COMMITTED, true, false, null, 'fail', 503, 'provider_unavailable'],
  ['model_not_loaded', PINNED, false, false, null, 'fail', 503, 'provider_unavailable'],
  ['model_not_loaded', SECOND, true, false, null, 'fail', 503, 'provider_unavailable'],
  ['context_exceeded', FRESH, false, false, null, 'fail', 400, 'context_length_exceeded'],
  ['context_exceeded', COMMITTED, false, false, null, 'fail', 400, 'context_length_exceeded'],
  ['context_exceeded', PINNED, false, false, null, 'fail', 400, 'context_length_exceeded'],
  ['context_exceeded', SECOND, false, false, null, 'fail', 400, 'context_length_exceeded'],
  ['provider_internal', FRESH, true, false, null, 'fail', 502, 'provider_error'],
  ['provider_internal', COMMITTED, true, false, null, 'fail', 502, 'provider_error'],
  ['provider_internal', PINNED, false, false, null, 'fail', 502, 'provider_error'],
  ['provider_internal', SECOND, true, false, null, 'fail', 502, 'provider_error'],
  ['provider_cancelled', FRESH, true, false, null, 'fail', 502, 'provider_error'],
  ['provider_cancelled', COMMITTED, true, false, null, 'fail', 502, 'provider_error'],
  ['provider_cancelled', PINNED, false, false, null, 'fail', 502, 'provider_error'],
  ['provider_cancelled', SECOND, true, false, null, 'fail', 502, 'provider_error'],
  ['first_chunk_timeout', FRESH, true, false, 'timeout', 'fail', 504, 'provider_timeout'],
  ['first_chunk_timeout', COMMITTED, true, false, 'timeout', 'fail', 504, 'provider_timeout'],
  ['first_chunk_timeout', PINNED, false, false, 'timeout', 'fail', 504, 'provider_timeout'],
  ['first_chunk_timeout', SECOND, true, false, 'timeout', 'fail', 504, 'provider_timeout'],
  ['request_timeout', FRESH, true, false, 'timeout', 'fail', 504, 'provider_timeout'],
  ['request_timeout', COMMITTED, true, false, 'timeout', 'fail', 504, 'provider_timeout'],
  ['request_timeout', PINNED, false, false, 'timeout', 'fail', 504, 'provider_timeout'],
  ['request_timeout', SECOND, true, false, 'timeout', 'fail', 504, 'provider_timeout'],
  ['response_too_large', FRESH, true, false, 'response_too_large', 'fail', 502, 'provider_error'],
  ['response_too_large', PINNED, false, false, 'response_too_large', 'fail', 502, 'provider_error'],
  ['response_too_large', SECOND, true, false, 'response_too_large', 'fail', 502, 'provider_error'],
  ['coordinator_busy', FRESH, false, false, 'coordinator_busy', 'fail', 503, 'coordinator_busy'],
  ['coordinator_busy', PINNED, false, false, 'coordinator_busy', 'fail', 503, 'coordinator_busy'],
  ['coordinator_busy', SECOND, false, false, 'coordinator_busy', 'fail', 503, 'coordinator_busy'],
]

const label = (s: RequestState): string => (s.committed ? 'committed' : s.pinned ? 'pinned' : s.attempts > 1 ? 'second attempt' : 'first attempt')

t.test('one decision per failure and request state', async (t) => {
  for (const [failure, state, fault, markBusy, cancel, action, status, code] of table) {
    const d = decide(failure, state)
    const got = [d.fault !== null, d.markBusy, d.cancel, d.action, toPublicError(d.error).status, d.error.code]
    t.same(got, [fault, markBusy, cancel, action, status, code], `${failure}, ${label(state)}`)
    if (d.fault !== null) t.equal(d.fault, failure, `${failure}: the fault is recorded under its own name, which /poolz shows`)
    if (d.action === 'failover') t.equal(d.reason, failure, `${failure}: the failover is logged under its cause`)
  }
})

t.test('every end status maps to a failure, and "complete" to none', async (t) => {
  const expected: Record<string, Failure | null> = {
    complete: null,
    cancelled: 'provider_cancelled',
    error_queue_full: 'queue_full',
    error_context_exceeded: 'context_exceeded',
    error_model_not_loaded: 'model_not_loaded',
    error_internal: 'provider_internal',
  }
  for (const status of END_STATUSES) t.equal(failureOfEnd(status), expected[status], status)
})
