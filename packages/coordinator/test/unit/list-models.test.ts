import t from 'tap'
import { listModels } from '../../src/routing/list-models.js'
import { makeSession } from '../helpers/fixtures.js'

t.test('counts only routingEligible providers, sorted by id', async (t) => {
  const pool = [
    makeSession({ providerId: 'a', models: ['zeta', 'alpha'], maxConcurrency: 4, slotsFree: 4, inFlight: 1, maxContextTokens: 4096 }),
    makeSession({ providerId: 'b', models: ['alpha'], maxConcurrency: 2, slotsFree: 2, maxContextTokens: 32768, authState: 'bearer_validated' }),
    makeSession({ providerId: 'dup', models: ['alpha', 'injected'], authState: 'bearerless_duplicate' }),
    makeSession({ providerId: 'drain', models: ['alpha', 'draining-only'], status: 'draining' }),
    makeSession({ providerId: 'full', models: ['alpha'], inFlight: 4 }),
  ]
  const list = listModels(pool, 1_700_000_000)
  t.equal(list.object, 'list')
  t.same(
    list.data.map((m) => m.id),
    ['alpha', 'zeta'],
    'no model appears from an ineligible provider alone',
  )
  t.same(list.data[0], {
    id: 'alpha',
    object: 'model',
    created: 1_700_000_000,
    owned_by: 'poolcoord',
    provider_count: 2,
    total_slots: 6,
    free_slots: 5,
    max_context_tokens: 32768,
  })
  t.same(listModels([], 1).data, [])
})
