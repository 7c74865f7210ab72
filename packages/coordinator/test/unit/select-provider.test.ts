import t from 'tap'
import type { ProviderSession } from '../../src/pool/provider-session.js'
import { selectProvider } from '../../src/routing/select-provider.js'
import { makeSession } from '../helpers/fixtures.js'

const s = (providerId: string, over: Partial<ProviderSession> = {}) => makeSession({ providerId, assignedId: `as-${providerId}`, ...over })
const none = new Set<string>()
const NOW = 1_000_000

interface Case {
  name: string
  pool: ProviderSession[]
  model?: string
  pin?: string
  exclude?: string[]
  /** Expected provider_id, or the failure reason. */
  expected: string
}

const cases: Case[] = [
  { name: 'empty pool: retryable, not "not found"', pool: [], expected: 'no_provider_available' },
  { name: 'model nobody serves', pool: [s('a')], model: 'gpt-x', expected: 'model_not_found' },
  { name: 'model matching is exact and case-sensitive', pool: [s('a')], model: 'Llama', expected: 'model_not_found' },
  { name: 'one eligible provider', pool: [s('a')], expected: 'a' },
  { name: 'supported_models count, not just model_id', pool: [s('a', { models: ['llama', 'mistral'] })], model: 'mistral', expected: 'a' },
  { name: 'most effective free slots wins (spread)', pool: [s('a', { slotsFree: 1 }), s('b', { slotsFree: 3 }), s('c', { slotsFree: 2 })], expected: 'b' },
  { name: 'effective slots count our own in-flight dispatches', pool: [s('a', { slotsFree: 4, inFlight: 3 }), s('b', { slotsFree: 2 })], expected: 'b' },
  {
    name: 'effective slots are capped by the provider report',
    pool: [s('a', { slotsFree: 1, maxConcurrency: 8 }), s('b', { slotsFree: 2, maxConcurrency: 2 })],
    expected: 'b',
  },
  {
    name: 'slot tie: higher throughput wins',
    pool: [s('a', { throughputTps: 20 }), s('b', { throughputTps: 45 }), s('c', { throughputTps: 30 })],
    expected: 'b',
  },
  { name: 'unknown throughput counts as 0', pool: [s('a', { throughputTps: null }), s('b', { throughputTps: 1 })], expected: 'b' },
  { name: 'slots outrank throughput', pool: [s('a', { slotsFree: 2, throughputTps: 1000 }), s('b', { slotsFree: 3, throughputTps: 1 })], expected: 'b' },
  { name: 'quarantined duplicate never chosen', pool: [s('a', { authState: 'bearerless_duplicate', slotsFree: 4 }), s('b', { slotsFree: 1 })], expected: 'b' },
  {
    name: 'only a quarantined duplicate serves it: known, not available',
    pool: [s('a', { authState: 'bearerless_duplicate' })],
    expected: 'no_provider_available',
  },
  { name: 'draining never chosen', pool: [s('a', { status: 'draining' }), s('b', { slotsFree: 1 })], expected: 'b' },
  { name: 'busy never chosen', pool: [s('a', { status: 'busy' })], expected: 'no_provider_available' },
  { name: 'full never chosen', pool: [s('a', { inFlight: 4 })], expected: 'no_provider_available' },
  { name: 'excluded (already tried) never chosen', pool: [s('a'), s('b', { slotsFree: 1 })], exclude: ['a'], expected: 'b' },
  { name: 'all excluded', pool: [s('a')], exclude: ['a'], expected: 'no_provider_available' },
  { name: 'pin beats the strategy', pool: [s('a', { slotsFree: 4 }), s('b', { slotsFree: 1 })], pin: 'b', expected: 'b' },
  { name: 'pinned provider ineligible: no substitute', pool: [s('a'), s('b', { status: 'draining' })], pin: 'b', expected: 'no_provider_available' },
  { name: 'pinned provider absent: no substitute', pool: [s('a')], pin: 'zz', expected: 'no_provider_available' },
  { name: 'pinned provider lacks the model, others have it', pool: [s('a'), s('b', { models: ['other'] })], pin: 'b', expected: 'no_provider_available' },
  {
    name: 'a provider cooling down after failures ranks below a healthy one with fewer slots',
    pool: [s('a', { slotsFree: 4, throughputTps: 99, cooldownUntil: NOW + 1 }), s('b', { slotsFree: 1 })],
    expected: 'b',
  },
  {
    name: 'when only cooling-down providers are left, they are still used',
    pool: [s('a', { slotsFree: 1, cooldownUntil: NOW + 1 }), s('b', { slotsFree: 3, cooldownUntil: NOW + 5000 })],
    expected: 'b',
  },
  { name: 'a cooldown that has passed counts for nothing', pool: [s('a', { slotsFree: 4, cooldownUntil: NOW }), s('b', { slotsFree: 1 })], expected: 'a' },
  {
    name: 'bearer_validated and self_minted are equal for selection',
    pool: [s('a', { authState: 'bearer_validated', slotsFree: 2 }), s('b', { slotsFree: 3 })],
    expected: 'b',
  },
]

for (const c of cases) {
  t.test(c.name, async (t) => {
    const r = selectProvider(c.pool, { model: c.model ?? 'llama', pin: c.pin ?? null, exclude: new Set(c.exclude ?? []) }, () => 0.5, NOW)
    t.equal(r.ok ? r.session.providerId : r.reason, c.expected)
  })
}

t.test('exact ties are broken at random, uniformly', async (t) => {
  const pool = [s('a'), s('b'), s('c'), s('d', { slotsFree: 1 })]
  const counts: Record<string, number> = {}
  // A seeded LCG: the test is deterministic, the strategy still sees varied draws.
  let x = 42
  const random = () => (x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31
  for (let i = 0; i < 3000; i++) {
    const r = selectProvider(pool, { model: 'llama', pin: null, exclude: none }, random, NOW)
    if (r.ok) counts[r.session.providerId] = (counts[r.session.providerId] ?? 0) + 1
  }
  t.equal(counts.d, undefined, 'the provider with fewer slots is never among the ties')
  for (const id of ['a', 'b', 'c']) t.ok((counts[id] ?? 0) > 850 && (counts[id] ?? 0) < 1150, `${id} chosen ${counts[id]} of 3000`)
})

t.test('the tie-break draws the random source once per extra tie, and never otherwise', async (t) => {
  let draws = 0
  const random = () => (draws++, 0.99)
  const r = selectProvider(
    [s('a', { slotsFree: 1 }), s('b', { slotsFree: 2 }), s('c', { slotsFree: 3 })],
    { model: 'llama', pin: null, exclude: none },
    random,
    NOW,
  )
  t.equal(r.ok && r.session.providerId, 'c')
  t.equal(draws, 0, 'no ties, no draws')
  const first = selectProvider([s('a'), s('b')], { model: 'llama', pin: null, exclude: none }, () => 0.99, NOW)
  t.equal(first.ok && first.session.providerId, 'a', 'a high draw keeps the incumbent')
  const second = selectProvider([s('a'), s('b')], { model: 'llama', pin: null, exclude: none }, () => 0.1, NOW)
  t.equal(second.ok && second.session.providerId, 'b', 'a low draw takes the newcomer')
})

t.test('large pools: a bounded sample from a random start, so a request costs the same at any pool size', async (t) => {
  const { SAMPLE } = await import('../../src/routing/select-provider.js')
  let seed = 7
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31
  /** Sessions that count how many of them a selection looks at. */
  function countedPool(n: number, over: (i: number) => Partial<ProviderSession> = () => ({})): { pool: ProviderSession[]; looked: () => number } {
    let reads = 0
    const pool = Array.from({ length: n }, (_, i) => {
      const session = s(`p${i}`, over(i))
      const models = session.models
      Object.defineProperty(session, 'models', { get: () => (reads++, models) })
      return session
    })
    return { pool, looked: () => reads }
  }
  for (const n of [1_000, 10_000, 100_000]) {
    const { pool, looked } = countedPool(n)
    for (let i = 0; i < 100; i++) t.ok(selectProvider(pool, { model: 'llama', pin: null, exclude: none }, random, NOW).ok)
    t.equal(looked(), 100 * SAMPLE, `pool of ${n}: ${SAMPLE} sessions looked at per request`)
  }

  const spread = new Map<string, number>()
  const { pool } = countedPool(1_000)
  // Math.random here: a small LCG's consecutive draws are correlated enough to skew this.
  for (let i = 0; i < 50_000; i++) {
    const r = selectProvider(pool, { model: 'llama', pin: null, exclude: none }, Math.random, NOW)
    if (r.ok) spread.set(r.session.providerId, (spread.get(r.session.providerId) ?? 0) + 1)
  }
  const counts = [...spread.values()]
  t.equal(spread.size, 1_000, 'every provider gets traffic')
  t.ok(
    Math.min(...counts) >= 15 && Math.max(...counts) <= 100,
    `50 each on average (Poisson(50): any of 1,000 outside 15-100 is about a one-in-a-million event); min ${Math.min(...counts)}, max ${Math.max(...counts)}`,
  )

  const freer = selectProvider(
    countedPool(1_000, (i) => ({ slotsFree: i % 2 === 0 ? 1 : 2, maxConcurrency: 2 })).pool,
    { model: 'llama', pin: null, exclude: none },
    random,
    NOW,
  )
  t.ok(freer.ok && freer.session.slotsFree === 2, 'within the sample, most free slots still wins')
})

t.test('large pools: the scan goes on past the sample when it has no healthy candidate yet', async (t) => {
  const n = 5_000
  const cooling = (id: string) => s(id, { consecutiveFailures: 3, cooldownUntil: NOW + 10_000 })
  const onlyHealthy = Array.from({ length: n }, (_, i) => (i === 1234 ? s('healthy') : cooling(`c${i}`)))
  for (const r of [0, 0.3, 0.9]) {
    const sel = selectProvider(onlyHealthy, { model: 'llama', pin: null, exclude: none }, () => r, NOW)
    t.ok(sel.ok && sel.session.providerId === 'healthy', `start at ${r}: the one healthy provider, not a cooling one`)
  }
  const onlyEligible = Array.from({ length: n }, (_, i) => (i === 4321 ? s('free') : s(`busy${i}`, { status: 'busy' })))
  const sel = selectProvider(onlyEligible, { model: 'llama', pin: null, exclude: none }, () => 0.5, NOW)
  t.ok(sel.ok && sel.session.providerId === 'free', 'the one eligible provider is found')
  const otherModel = Array.from({ length: n }, (_, i) => s(`m${i}`, { models: i === 17 ? ['rare'] : ['llama'] }))
  const rare = selectProvider(otherModel, { model: 'rare', pin: null, exclude: none }, () => 0.5, NOW)
  t.ok(rare.ok && rare.session.providerId === 'm17', 'a model only one provider serves')
  const pinned = selectProvider(otherModel, { model: 'llama', pin: 'm4999', exclude: none }, () => 0.5, NOW)
  t.ok(pinned.ok && pinned.session.providerId === 'm4999', 'a pin is found wherever it sits')
})

t.test('large pools: neither connection order nor a block of failing providers decides who wins', async (t) => {
  const { Registry } = await import('../../src/pool/registry.js')
  const share = (pool: () => readonly ProviderSession[], pick: (s: ProviderSession) => boolean): number => {
    let hits = 0
    for (let i = 0; i < 20_000; i++) {
      const r = selectProvider(pool(), { model: 'llama', pin: null, exclude: none }, Math.random, NOW)
      if (r.ok && pick(r.session)) hits++
    }
    return hits / 20_000
  }
  // One operator's big machines connected first, then many small ones.
  const reg = new Registry<null>()
  for (let i = 0; i < 200; i++) reg.register(s(`big${i}`, { slotsFree: 8, maxConcurrency: 8 }), null)
  for (let i = 0; i < 800; i++) reg.register(s(`small${i}`, { slotsFree: 2, maxConcurrency: 2 }), null)
  const small = share(
    () => reg.sessionList(),
    (x) => x.providerId.startsWith('small'),
  )
  t.ok(small < 0.01, `small providers get ${(100 * small).toFixed(2)}% while big ones have room (a full scan: 0%)`)

  // A block of cooling-down sessions, then a weak provider, then strong ones.
  const cooling = Array.from({ length: 300 }, (_, i) => s(`c${i}`, { consecutiveFailures: 3, cooldownUntil: NOW + 10_000 }))
  const blocked = [
    ...cooling,
    s('weak', { slotsFree: 1, maxConcurrency: 8 }),
    ...Array.from({ length: 700 }, (_, i) => s(`strong${i}`, { slotsFree: 8, maxConcurrency: 8 })),
  ]
  const weak = share(
    () => blocked,
    (x) => x.providerId === 'weak',
  )
  t.ok(weak < 0.01, `the provider after the failing block gets ${(100 * weak).toFixed(2)}% (a full scan: 0%)`)
})
