import t from 'tap'
import { END_STATUSES } from '@poolcoord/protocol'
import { toPublicError } from '../../src/errors.js'
import { errorForFailure, failureOfEnd, mayFailover, type AttemptFailure } from '../../src/routing/failure-policy.js'

const fresh = { committed: false, pinned: false, attempts: 1 }

t.test('which failures may move a request to a second provider', async (t) => {
  const table: Array<[AttemptFailure, boolean]> = [
    ['disconnect', true],
    ['unreachable', true],
    ['queue_full', true],
    ['model_not_loaded', true],
    ['context_exceeded', false],
    ['provider_internal', false],
    ['provider_cancelled', false],
    ['first_chunk_timeout', false],
  ]
  for (const [failure, expected] of table) t.equal(mayFailover(failure, fresh), expected, failure)
})

t.test('never after the first byte, never when pinned, only once', async (t) => {
  t.equal(mayFailover('disconnect', { ...fresh, committed: true }), false, 'bytes reached the buyer')
  t.equal(mayFailover('disconnect', { ...fresh, pinned: true }), false, 'pinned')
  t.equal(mayFailover('disconnect', { ...fresh, attempts: 2 }), false, 'already failed over once')
})

t.test('every end status maps, and the buyer error for each failure', async (t) => {
  t.equal(failureOfEnd('complete'), null)
  const expected: Record<string, [number, string]> = {
    cancelled: [502, 'provider_error'],
    error_queue_full: [503, 'provider_unavailable'],
    error_context_exceeded: [400, 'context_length_exceeded'],
    error_model_not_loaded: [503, 'provider_unavailable'],
    error_internal: [502, 'provider_error'],
  }
  for (const status of END_STATUSES.filter((s) => s !== 'complete')) {
    const failure = failureOfEnd(status) as AttemptFailure
    const err = errorForFailure(failure)
    t.same([toPublicError(err).status, err.code], expected[status], status)
  }
  t.equal(errorForFailure('disconnect').code, 'provider_error')
  t.equal(errorForFailure('unreachable').code, 'provider_unavailable')
  t.equal(errorForFailure('first_chunk_timeout').code, 'provider_timeout')
})
