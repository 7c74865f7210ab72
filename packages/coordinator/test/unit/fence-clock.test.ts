import t from 'tap'
import { FenceClock, checkFenceTiming, defaultFenceTiming, fenceDeadline, isLiveAt, type FenceTiming } from '../../src/cluster/fence-clock.js'
import { ConfigError } from '../../src/errors.js'

const T = defaultFenceTiming // ttl 10 s, margin 3 s, renew every 2 s: the deadline is 7 s after the send

t.test('the default timing: two renewals fit before the deadline, which comes a margin before expiry', async (t) => {
  t.strictSame(T, { ttlMs: 10_000, marginMs: 3_000, renewIntervalMs: 2_000 })
  t.doesNotThrow(() => checkFenceTiming(T))
  t.equal(fenceDeadline(1_000, T), 8_000)
  t.ok(fenceDeadline(1_000, T) < 1_000 + T.ttlMs, 'the deadline precedes the earliest possible expiry')
})

t.test('live or fenced: last successful renewal (send time) × now', async (t) => {
  const cases: Array<[sentAt: number | null, now: number, live: boolean, why: string]> = [
    [null, 0, false, 'no renewal has succeeded yet'],
    [null, 1e12, false, 'no renewal, ever'],
    [0, 0, true, 'just renewed'],
    [0, 6_999, true, 'one ms before the deadline'],
    [0, 7_000, false, 'at the deadline (ttl - margin)'],
    [0, 7_001, false, 'past the deadline'],
    [0, 9_999, false, 'just before the server could expire the key'],
    [0, 10_000, false, 'when the server may expire the key'],
    [5_000, 11_999, true, 'a later renewal moves the deadline to 12 s'],
    [5_000, 12_000, false, 'and fences at 12 s'],
    [5_000, 4_000, true, 'a now before the send (a reading taken earlier) is still live'],
    [-3_000, 3_999, true, 'any origin works: only differences count'],
    [-3_000, 4_000, false, 'any origin works: fenced at sent + 7 s'],
    [123.456, 7_123.455, true, 'sub-millisecond times'],
    [123.456, 7_123.456, false, 'sub-millisecond deadline'],
  ]
  for (const [sentAt, now, live, why] of cases) {
    t.equal(isLiveAt(sentAt, now, T), live, `${why}: sent ${sentAt}, now ${now} -> ${live ? 'live' : 'fenced'}`)
    const clock = new FenceClock(T)
    if (sentAt !== null) clock.renewed(sentAt)
    t.equal(clock.isLive(now), live, `FenceClock agrees: ${why}`)
  }
})

t.test('the clock keeps the newest send time; replies may come back in any order', async (t) => {
  const clock = new FenceClock(T)
  t.equal(clock.lastRenewalSentAt, null)
  t.equal(clock.deadline(), -Infinity)
  clock.renewed(2_000)
  clock.renewed(1_000) // an older renewal's late reply
  t.equal(clock.lastRenewalSentAt, 2_000)
  t.equal(clock.deadline(), 9_000)
  clock.renewed(4_000)
  t.equal(clock.deadline(), 11_000)
})

t.test('revoke: not live from that moment, and nothing sent before it counts again', async (t) => {
  const clock = new FenceClock(T)
  clock.renewed(0)
  t.ok(clock.isLive(3_000))
  clock.revoke(3_000)
  t.notOk(clock.isLive(3_000), 'fenced at once, though the old deadline (7 s) has not passed')
  t.equal(clock.lastRenewalSentAt, null)
  clock.renewed(2_500) // sent before the revocation, answered after
  t.notOk(clock.isLive(3_001), 'a renewal sent before the revocation never unfences')
  clock.renewed(3_000)
  t.ok(clock.isLive(3_001), 'one sent at the revocation or later does')
  t.equal(clock.deadline(), 10_000)
  clock.revoke(1_000) // an older revocation moves nothing back
  clock.renewed(2_000)
  t.notOk(clock.isLive(2_001), 'the later revocation still holds')
})

t.test('timing bounds', async (t) => {
  const bad: Array<[FenceTiming, string]> = [
    [{ ttlMs: 10_000, marginMs: 10_000, renewIntervalMs: 1_000 }, 'margin equal to the ttl'],
    [{ ttlMs: 10_000, marginMs: 3_000, renewIntervalMs: 3_600 }, 'two renewals do not fit before the deadline'],
    [{ ttlMs: 10_000, marginMs: 0, renewIntervalMs: 1_000 }, 'no margin'],
    [{ ttlMs: 0, marginMs: 0, renewIntervalMs: 0 }, 'zeros'],
    [{ ttlMs: 10_000.5, marginMs: 3_000, renewIntervalMs: 2_000 }, 'fractional ms'],
    [{ ttlMs: Number.NaN, marginMs: 3_000, renewIntervalMs: 2_000 }, 'NaN'],
  ]
  for (const [timing, why] of bad) {
    t.throws(() => checkFenceTiming(timing), ConfigError, why)
    t.throws(() => new FenceClock(timing), ConfigError, `${why} (constructor)`)
  }
  t.doesNotThrow(() => checkFenceTiming({ ttlMs: 4_000, marginMs: 1_500, renewIntervalMs: 500 }), 'the tests’ short timing')
  t.doesNotThrow(() => checkFenceTiming({ ttlMs: 10_000, marginMs: 3_000, renewIntervalMs: 3_500 }), 'exactly two renewals fit')
})
