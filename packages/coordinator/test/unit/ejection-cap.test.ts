import t from 'tap'
import { ConfigError } from '../../src/errors.js'
import { envToConfig } from '../../src/config.js'
import {
  EjectionCap,
  MIN_RECOMPUTE_MS,
  REFRESH_MS,
  cooldownFlags,
  cooldownReleases,
  ejectionAllowance,
  isSidelined,
  releasedFor,
  type Released,
} from '../../src/pool/ejection-cap.js'
import type { ProviderSession } from '../../src/pool/provider-session.js'
import { Registry } from '../../src/pool/registry.js'
import { selectProvider } from '../../src/routing/select-provider.js'
import { makeSession } from '../helpers/fixtures.js'

const NOW = 1_000_000
const s = (providerId: string, over: Partial<ProviderSession> = {}) => makeSession({ providerId, assignedId: `as-${providerId}`, ...over })
/** A session that began failing `ago` ms before NOW, in cooldown for another second unless `over` says otherwise. */
/** Released as plain data: model -> sorted provider_ids. */
const byModel = (r: Released) => Object.fromEntries([...r].map(([m, ids]) => [m, [...ids].sort()]))
/** The provider_ids released for one model, sorted. */
const ids = (r: Released, model = 'llama') => [...releasedFor(r, model)].sort()
const cooling = (providerId: string, ago: number, over: Partial<ProviderSession> = {}) =>
  s(providerId, { consecutiveFailures: 1, cooldownUntil: NOW + 1000, failingSince: NOW - ago, lastFailure: 'provider_internal', ...over })

t.test('the allowance: the floor of the share, so at least (100 - cap)% stay routable', async (t) => {
  const table: Array<[providers: number, percent: number, allowed: number]> = [
    [0, 50, 0],
    [1, 50, 0],
    [2, 50, 1],
    [3, 50, 1],
    [4, 50, 2],
    [9, 10, 0],
    [10, 10, 1],
    [5, 0, 0],
    [5, 100, 5],
    [3, 99, 2],
  ]
  for (const [providers, percent, allowed] of table) t.equal(ejectionAllowance(providers, percent), allowed, `${providers} providers at ${percent}%`)
})

interface Case {
  name: string
  pool: ProviderSession[]
  percent?: number
  /** Per model, the provider_ids released for it. */
  released: Record<string, string[]>
}

const cases: Case[] = [
  { name: 'nothing cooling: nothing to release', pool: [s('a'), s('b')], released: {} },
  { name: 'within the allowance: the cooldown stands', pool: [cooling('a', 10), s('b')], released: {} },
  { name: 'two of two cooling at 50%: the one that began failing last is released', pool: [cooling('a', 100), cooling('b', 500)], released: { llama: ['a'] } },
  {
    name: 'the order is when the run began, not when the cooldown ends: a released provider that fails again stays released',
    pool: [cooling('a', 100, { consecutiveFailures: 5, cooldownUntil: NOW + 16_000 }), cooling('b', 500)],
    released: { llama: ['a'] },
  },
  {
    name: 'runs begun at the same moment: provider_id decides, the same way every time',
    pool: [cooling('b', 100), cooling('a', 100)],
    released: { llama: ['a'] },
  },
  {
    name: 'three of four cooling at 50%: one released, two stay sidelined',
    pool: [cooling('a', 300), cooling('b', 100), cooling('c', 200), s('d')],
    released: { llama: ['b'] },
  },
  {
    name: 'four of four at 25%: three released',
    pool: [cooling('a', 4), cooling('b', 3), cooling('c', 2), cooling('d', 1)],
    percent: 25,
    released: { llama: ['b', 'c', 'd'] },
  },
  { name: 'cap 100: the cooldown may sideline everyone', pool: [cooling('a', 1), cooling('b', 2)], percent: 100, released: {} },
  { name: 'cap 0: the cooldown sidelines nobody', pool: [cooling('a', 1), cooling('b', 2)], percent: 0, released: { llama: ['a', 'b'] } },
  { name: 'one provider for a model: at 50% it is never sidelined', pool: [cooling('a', 1)], released: { llama: ['a'] } },
  { name: 'a cooldown that has ended is not counted', pool: [cooling('a', 100, { cooldownUntil: NOW }), cooling('b', 200), s('c')], released: {} },
  {
    name: 'per model: the providers of other models neither count nor get released',
    pool: [cooling('a', 100), cooling('b', 200), s('x1', { models: ['other'] }), s('x2', { models: ['other'] }), cooling('x3', 50, { models: ['other'] })],
    released: { llama: ['a'] },
  },
  {
    name: 'providers routingEligible turns away (cordoned, draining, duplicate) are not among the model providers',
    pool: [cooling('a', 100), cooling('b', 200), s('c', { cordoned: true }), s('d', { status: 'draining' }), s('e', { authState: 'bearerless_duplicate' })],
    released: { llama: ['a'] },
  },
  {
    name: 'load does not count against a provider: busy or full providers still share the model',
    pool: [cooling('a', 100), cooling('b', 200), s('c', { status: 'busy' }), s('d', { inFlight: 4 })],
    released: {},
  },
  {
    name: 'a cooling provider turned away for load is still counted as cooling',
    pool: [cooling('a', 100, { status: 'busy' }), cooling('b', 200, { inFlight: 4 }), s('c')],
    released: { llama: ['a'] },
  },
  {
    name: 'a cooling provider that cannot be routed anyway (cordoned) is neither counted nor released',
    pool: [cooling('a', 100, { cordoned: true }), cooling('b', 200), s('c')],
    released: {},
  },
  {
    name: 'a provider serving two models is released only for the model that needs it, and stays sidelined for the other',
    pool: [cooling('a', 50, { models: ['llama', 'rare'] }), cooling('b', 100), s('c'), s('d')],
    released: { rare: ['a'] },
  },
  {
    name: 'a provider released by both its models is released for each',
    pool: [cooling('a', 50, { models: ['llama', 'rare'] }), cooling('b', 100)],
    released: { llama: ['a'], rare: ['a'] },
  },
]

for (const c of cases) {
  t.test(c.name, async (t) => {
    const got = cooldownReleases(c.pool, NOW, c.percent ?? 50)
    t.same(byModel(got.released), c.released)
    for (const p of c.pool) {
      for (const m of p.models) {
        const expected = NOW < p.cooldownUntil && !(c.released[m] ?? []).includes(p.providerId)
        t.equal(isSidelined(p, NOW, releasedFor(got.released, m)), expected, `${p.providerId} ${expected ? 'sidelined' : 'not sidelined'} for ${m}`)
      }
    }
  })
}

t.test('until: when the first running cooldown ends, and the answer may change', async (t) => {
  t.equal(cooldownReleases([s('a')], NOW, 50).until, Infinity)
  const pool = [cooling('a', 100, { cooldownUntil: NOW + 3000 }), cooling('b', 200, { cooldownUntil: NOW + 2000 }), s('c')]
  const r = cooldownReleases(pool, NOW, 50)
  t.same(byModel(r.released), { llama: ['a'] })
  t.equal(r.until, NOW + 2000)
  t.same(byModel(cooldownReleases(pool, NOW + 2000, 50).released), {}, 'once b is healthy, a alone is within the allowance')
})

t.test('/poolz flags: sidelined for some model, released for some model, or both', async (t) => {
  const released: Released = new Map([
    ['rare', new Set(['a', 'b'])],
    ['llama', new Set(['b'])],
  ])
  const two = { models: ['llama', 'rare'] }
  t.same(cooldownFlags(cooling('a', 1, two), NOW, released), { coolingDown: true, capped: true }, 'released for rare, sidelined for llama: both')
  t.same(cooldownFlags(cooling('b', 1, two), NOW, released), { coolingDown: false, capped: true }, 'released for each of its models')
  t.same(cooldownFlags(cooling('c', 1), NOW, released), { coolingDown: true, capped: false }, 'released for none')
  t.same(cooldownFlags(s('a', two), NOW, released), { coolingDown: false, capped: false }, 'not in cooldown: neither, whatever the sets say')
})

t.test('selection: healthy, then released, then sidelined; a released provider wins only its share', async (t) => {
  const req = { model: 'llama', pin: null, exclude: new Set<string>() }
  // strong began failing first and has more free slots; weak failed after it.
  const pool = [cooling('weak', 100, { slotsFree: 1 }), cooling('strong', 200, { slotsFree: 4 })]
  const without = selectProvider(pool, req, () => 0.5, NOW)
  t.equal(without.ok && without.session.providerId, 'strong', 'without the cap both are sidelined, and slots decide')
  const capped = selectProvider(pool, req, () => 0.5, NOW, cooldownReleases(pool, NOW, 50).released)
  t.equal(capped.ok && capped.session.providerId, 'weak', 'with the cap weak is released: with no healthy candidate it beats the sidelined strong')

  const three = [...pool, s('healthy', { slotsFree: 2 })]
  const released = cooldownReleases(three, NOW, 50).released
  t.same(byModel(released), { llama: ['weak'] }, '2 of 3 cooling at 50%: one too many, weak is released')
  // One healthy and one released candidate: the released tier gets 1 / (1 + 1) of the draws.
  const within = selectProvider(three, req, () => 0.49, NOW, released)
  t.equal(within.ok && within.session.providerId, 'weak', 'a draw within its share: the released provider, although it has fewer slots')
  const past = selectProvider(three, req, () => 0.5, NOW, released)
  t.equal(past.ok && past.session.providerId, 'healthy', 'a draw past its share: the best healthy provider')
  const elsewhere = selectProvider(three, req, () => 0.49, NOW, new Map([['other', new Set(['weak'])]]))
  t.equal(elsewhere.ok && elsewhere.session.providerId, 'healthy', "a release for another model does not lift weak's cooldown on this one")
})

t.test('selection: the released tier wins released / (healthy + released) of the draws, whatever its free slots', async (t) => {
  const req = { model: 'llama', pin: null, exclude: new Set<string>() }
  const pool = [s('h1', { slotsFree: 1 }), s('h2', { slotsFree: 1 }), s('h3', { slotsFree: 1 }), cooling('r', 100, { slotsFree: 4 }), cooling('x', 200)]
  const released: Released = new Map([['llama', new Set(['r'])]])
  let r = 0
  for (let k = 0; k < 100; k++) {
    const sel = selectProvider(pool, req, () => k / 100, NOW, released)
    if (sel.ok && sel.session.providerId === 'r') r++
    t.not(sel.ok && sel.session.providerId, 'x', 'the sidelined provider never, while others can serve')
  }
  t.equal(r, 25, '1 released among 4 candidates: a quarter of the draws')
})

t.test('two bad providers and a good one at 50%: the released one stays released and gets its share, the other stays last', async (t) => {
  // Both liars advertise the most slots; each request that meets a liar fails over to the next candidate.
  const reg = new Registry<null>()
  const cap = new EjectionCap(50)
  reg.register(s('liar-1', { slotsFree: 4, maxConcurrency: 256 }), null)
  reg.register(s('liar-2', { slotsFree: 4, maxConcurrency: 256 }), null)
  reg.register(s('honest', { slotsFree: 2 }), null)
  const req = { model: 'llama', pin: null, exclude: new Set<string>() }
  reg.recordOutcome('liar-1', 'queue_full', NOW)
  reg.recordOutcome('liar-2', 'queue_full', NOW + 1)
  for (let i = 0; i < 10; i++) {
    const now = NOW + 2 + i * MIN_RECOMPUTE_MS
    // liar-2 is 1 of the 2 candidates that are not sidelined: even requests draw within its share, odd ones past it.
    const draw = i % 2 === 0 ? 0.25 : 0.75
    const first = selectProvider(reg.sessionList(), req, () => draw, now, cap.released(reg, now))
    if (i % 2 === 1) {
      t.equal(first.ok && first.session.providerId, 'honest', `request ${i}: past the released liar's share, the honest provider`)
      continue
    }
    t.equal(first.ok && first.session.providerId, 'liar-2', `request ${i}: within its share, the released liar`)
    reg.recordOutcome('liar-2', 'queue_full', now)
    const failover = selectProvider(reg.sessionList(), { ...req, exclude: new Set(['liar-2']) }, () => draw, now, cap.released(reg, now))
    t.equal(failover.ok && failover.session.providerId, 'honest', `request ${i}: its failover reaches the honest provider, not the other liar`)
  }
})

t.test('EjectionCap: one set per pool state, recomputed when the pool signals a change', async (t) => {
  const reg = new Registry<null>()
  const cap = new EjectionCap(50)
  reg.register(s('a'), null)
  reg.register(s('b'), null)
  let now = NOW
  const idle = cap.released(reg, now)
  t.equal(idle.size, 0)
  t.equal(cap.released(reg, now + 1), idle, 'nothing changed: the same sets, no new allocation')

  // Each change comes MIN_RECOMPUTE_MS after the last computation: it is seen at once.
  reg.recordOutcome('a', 'provider_internal', (now += MIN_RECOMPUTE_MS))
  t.same(ids(cap.released(reg, now)), [], 'one of two cooling: within the allowance')
  reg.recordOutcome('b', 'first_chunk_timeout', (now += MIN_RECOMPUTE_MS))
  const both = cap.released(reg, now)
  t.same(ids(both), ['b'], 'both cooling: the one that failed last is released at once')
  t.equal(cap.released(reg, now + 10), both, 'no change since: the same sets')
  reg.recordOutcome('b', 'first_chunk_timeout', (now += MIN_RECOMPUTE_MS))
  t.same(ids(cap.released(reg, now)), ['b'], 'failing again does not trade places with a')

  reg.recordOutcome('a', null, (now += MIN_RECOMPUTE_MS))
  t.same(ids(cap.released(reg, now)), [], 'a success moves the version: recomputed')
  const version = reg.routingVersion
  reg.recordOutcome('a', null, now)
  t.equal(reg.routingVersion, version, 'a success on a clean record is no change')

  reg.register(s('c'), null)
  reg.register(s('d'), null)
  reg.recordOutcome('c', 'disconnect', (now += MIN_RECOMPUTE_MS))
  reg.recordOutcome('d', 'disconnect', now)
  t.same(ids(cap.released(reg, now)), ['c'], 'three of four cooling at 50%: one too many, c and d began last, c by id')
})

t.test('EjectionCap: under a stream of failures at most one computation per MIN_RECOMPUTE_MS; joins, leaves and /poolz at once', async (t) => {
  const reg = new Registry<null>()
  const cap = new EjectionCap(50)
  for (const id of ['a', 'b', 'c']) reg.register(s(id), null)
  t.same(ids(cap.released(reg, NOW)), [])
  reg.recordOutcome('a', 'provider_internal', NOW + 1)
  reg.recordOutcome('b', 'provider_internal', NOW + 2)
  t.same(ids(cap.released(reg, NOW + 2)), [], 'computed 2 ms ago: the failures wait')
  t.same(ids(cap.released(reg, NOW + MIN_RECOMPUTE_MS - 1)), [], 'still waiting')
  t.same(ids(cap.released(reg, NOW + MIN_RECOMPUTE_MS)), ['b'], 'seen once MIN_RECOMPUTE_MS has passed: 2 of 3 cooling, b began last')

  const t1 = NOW + MIN_RECOMPUTE_MS
  reg.register(s('d'), null)
  t.same(ids(cap.released(reg, t1 + 1)), [], 'a session joining is seen at once: 2 of 4 cooling is within the allowance')
  reg.remove('d', 'as-d')
  t.same(ids(cap.released(reg, t1 + 2)), ['b'], 'and one leaving')

  reg.recordOutcome('c', 'provider_internal', t1 + 3)
  t.same(ids(cap.released(reg, t1 + 3)), ['b'], "the router's read waits")
  const fresh = cap.fresh(reg, t1 + 3)
  t.same(ids(fresh), ['b', 'c'], "/poolz's read recomputes at once: 3 of 3 cooling, c and b began last")
  t.equal(cap.released(reg, t1 + 4), fresh, 'and the router reads the same sets after it')
})

t.test('EjectionCap: recomputed when a cooldown it counted ends', async (t) => {
  const reg = new Registry<null>()
  const cap = new EjectionCap(50)
  for (const id of ['a', 'b', 'c']) reg.register(s(id), null)
  reg.recordOutcome('a', 'provider_internal', NOW) // cools until NOW + 1000
  reg.recordOutcome('b', 'provider_internal', NOW + 1)
  reg.recordOutcome('b', 'provider_internal', NOW + 2) // cools until NOW + 2002
  t.same(ids(cap.released(reg, NOW + 2)), ['b'], '2 of 3 cooling: b, which began last, is released')
  t.same(ids(cap.released(reg, NOW + 999)), ['b'])
  t.same(ids(cap.released(reg, NOW + 1000)), [], "a's cooldown ended: b alone is within the allowance, and goes back to last")
})

t.test('EjectionCap: a cordon, a drain and a heartbeat that takes a provider out all count', async (t) => {
  const reg = new Registry<null>()
  const cap = new EjectionCap(50)
  // Each change comes MIN_RECOMPUTE_MS after the last computation, and within a's 1 s cooldown.
  let now = NOW
  const step = () => (now += MIN_RECOMPUTE_MS)
  for (const id of ['a', 'b', 'c']) reg.register(s(id), null)
  reg.recordOutcome('a', 'provider_internal', now)
  t.same(ids(cap.released(reg, now)), [], '1 of 3 cooling')
  reg.setCordoned('c', true)
  t.same(ids(cap.released(reg, step())), [], '1 of 2: still within the allowance')
  reg.recordOutcome('b', 'provider_internal', step())
  t.same(ids(cap.released(reg, now)), ['b'], '2 of 2 once c is cordoned')
  reg.setCordoned('c', false)
  t.same(ids(cap.released(reg, step())), ['b'], '2 of 3: one too many')
  reg.requestDrain('c', 'as-c')
  t.same(ids(cap.released(reg, step())), ['b'], 'c draining: 2 of 2')

  const v = reg.routingVersion
  reg.applyHeartbeat('a', 'as-a', { status: 'busy', slotsFree: 0, slotsTotal: 4 }, now + 1)
  reg.applyHeartbeat('a', 'as-a', { status: 'ready', slotsFree: 4, slotsTotal: 4, models: ['llama'] }, now + 2)
  t.equal(reg.routingVersion, v, 'load and unchanged models are no change')
  reg.applyHeartbeat('b', 'as-b', { status: 'degraded', slotsFree: 4, slotsTotal: 4 }, step())
  t.not(reg.routingVersion, v, 'a status that keeps it from routing is')
  t.same(ids(cap.released(reg, now)), ['a'], 'b degraded: a alone serves the model, and is never sidelined')
})

t.test('EjectionCap: changes nothing signals are picked up within REFRESH_MS', async (t) => {
  const reg = new Registry<null>()
  const cap = new EjectionCap(50)
  for (const id of ['a', 'b', 'c']) reg.register(s(id, { leasePending: true }), null)
  // Three failures each: 4 s cooldowns, longer than the refresh.
  for (let i = 0; i < 3; i++) {
    reg.recordOutcome('a', 'provider_internal', NOW)
    reg.recordOutcome('b', 'provider_internal', NOW + 1)
  }
  t.same(ids(cap.released(reg, NOW + 1)), [], 'none of them routable yet (lease pending)')
  for (const id of ['a', 'b', 'c']) reg.get(id)!.leasePending = false // as ws/provider-connection.ts does, with no signal
  t.same(ids(cap.released(reg, NOW + 2)), [], 'not seen yet')
  t.same(ids(cap.released(reg, NOW + 2 + REFRESH_MS)), ['b'], 'seen at the refresh')
})

t.test('COORD_MAX_EJECTION_PERCENT: an integer from 0 to 100, 50 by default', async (t) => {
  t.equal(envToConfig({ operatorKey: 'k'.repeat(16) }).limits.maxEjectionPercent, 50)
  for (const v of ['0', '35', '100']) t.equal(envToConfig({ operatorKey: 'k'.repeat(16), maxEjectionPercent: v }).limits.maxEjectionPercent, Number(v))
  for (const v of ['101', '-1', '12.5', 'half']) {
    t.throws(() => envToConfig({ operatorKey: 'k'.repeat(16), maxEjectionPercent: v }), ConfigError, v)
    t.throws(() => envToConfig({ operatorKey: 'k'.repeat(16), maxEjectionPercent: v }), /COORD_MAX_EJECTION_PERCENT must be an integer from 0 to 100/)
  }
})
