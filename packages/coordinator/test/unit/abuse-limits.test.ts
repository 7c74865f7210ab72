import t from 'tap'
import { addressKeys } from '../../src/limits/address-prefix.js'
import { PrefixSessions } from '../../src/limits/prefix-sessions.js'
import { formatRate, parseRate, refilled } from '../../src/limits/rate.js'
import { abuseLimitsFromEnv } from '../../src/limits/abuse-settings.js'
import { PendingLimiter } from '../../src/ws/pending-limiter.js'

t.test('address keys: IPv4 /32 and /24, IPv6 /64 and /48, mapped IPv4 as IPv4', async (t) => {
  const cases: [string, string, string][] = [
    ['198.51.100.7', '198.51.100.7', '198.51.100.0/24'],
    ['::ffff:198.51.100.7', '198.51.100.7', '198.51.100.0/24'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64', '2001:db8:1::/48'],
    ['2001:db8:1:2::9', '2001:db8:1:2::/64', '2001:db8:1::/48'],
    ['2001:0DB8:0001:0002:ffff::1', '2001:db8:1:2::/64', '2001:db8:1::/48'],
    ['::1', '0:0:0:0::/64', '0:0:0::/48'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64', 'fe80:0:0::/48'],
    ['::FFFF:c633:6407', '198.51.100.7', '198.51.100.0/24'],
    ['0:0:0:0:0:ffff:198.51.100.7', '198.51.100.7', '198.51.100.0/24'],
    ['64:ff9b::198.51.100.7', '198.51.100.7', '198.51.100.0/24'],
    ['64:ff9b::c633:6408', '198.51.100.8', '198.51.100.0/24'],
    ['unknown', 'other', 'other'],
  ]
  for (const [peer, address, prefix] of cases) t.same(addressKeys(peer), { address, prefix }, peer)
  t.equal(addressKeys('2001:db8:1:2::1').address, addressKeys('2001:db8:1:2:ffff:ffff:ffff:ffff').address, 'one /64, one budget')
  t.not(addressKeys('2001:db8:1:2::1').address, addressKeys('2001:db8:1:3::1').address, 'the next /64 is another address')
})

t.test('rate settings', async (t) => {
  t.same(parseRate('10/h', 'X'), { burst: 10, periodMs: 3_600_000 })
  t.same(parseRate(' 30/10m ', 'X'), { burst: 30, periodMs: 600_000 })
  t.same(parseRate('500/1d', 'X'), { burst: 500, periodMs: 86_400_000 })
  t.equal(parseRate('OFF', 'X'), null)
  for (const bad of ['', '10', '0/h', '10/0s', '10/2d', '10/h/2', '-1/h', '10/500ms', '10000000/h'])
    t.match(parseRate(bad, 'COORD_X'), /^COORD_X must be off or/, `refused: ${JSON.stringify(bad)}`)
  t.equal(formatRate({ burst: 10, periodMs: 3_600_000 }), '10/h')
  t.equal(formatRate({ burst: 30, periodMs: 600_000 }), '30/10m')
  t.equal(formatRate(null), 'off')
  t.equal(refilled(0, 0, 360_000, 10, 10 / 3_600_000), 1, 'six minutes refill one of 10/h')
  t.equal(refilled(9.5, 0, 3_600_000, 10, 10 / 3_600_000), 10, 'never above the cap')
  t.equal(refilled(3, 1000, 0, 10, 1), 3, 'a clock behind the last take refills nothing')
  t.throws(() => abuseLimitsFromEnv({ mintRateAddress: '10 per hour' }), /COORD_MINT_RATE_ADDRESS/)
  t.throws(() => abuseLimitsFromEnv({ maxPending: '8' }), /COORD_MAX_PENDING must be an integer from 16/)
  t.same(abuseLimitsFromEnv({ mintRateGlobal: 'off', admissionDeadlineS: '20' }).admissionDeadlineMs, 20_000)
  t.equal(abuseLimitsFromEnv({ mintRateGlobal: 'off' }).mint?.mintGlobal, null)
  t.same(abuseLimitsFromEnv({ mintRateGlobal: 'off' }).mint?.mintPerAddress, { burst: 10, periodMs: 3_600_000 }, 'the others keep their defaults')
})

t.test('pending slots: per address, then a fair share per prefix once full', async (t) => {
  const evicted: string[] = []
  const p = new PendingLimiter(6, 2)
  const take = (peer: string) => p.acquire(peer, () => evicted.push(peer))
  t.ok(take('10.0.0.1') && take('10.0.0.1'))
  t.equal(take('10.0.0.1'), null, 'the third from one address is refused')
  const r = [take('10.0.0.2'), take('10.0.0.2'), take('10.0.0.3'), take('10.0.0.3')]
  t.ok(
    r.every((x) => x !== null),
    'the cap is reached by one /24',
  )
  t.equal(p.pending, 6)
  t.equal(take('10.0.0.4'), null, 'full, and the same prefix cannot displace itself')
  t.same(evicted, [])
  const other = take('10.0.1.1')
  t.ok(other !== null, 'another prefix takes a slot at once')
  t.same(evicted, ['10.0.0.1'], "the largest prefix's oldest connection was cut")
  t.equal(p.pending, 6)
  t.ok(take('10.0.2.1'), 'a third prefix too')
  t.same(evicted, ['10.0.0.1', '10.0.0.1'], 'oldest first')
  // 10.0.0/24 now holds 4 slots, 10.0.1/24 and 10.0.2/24 one each.
  t.ok(take('10.0.1.2'), 'a prefix holding 1 still displaces one holding 4')
  t.same(evicted, ['10.0.0.1', '10.0.0.1', '10.0.0.2'])
  t.equal(take('10.0.1.3'), null, 'but not once it holds within one of the largest (2 against 3)')
  other?.release()
  other?.release()
  t.equal(p.pending, 5, 'release is idempotent')
  t.ok(take('10.0.1.3'), 'a released slot is free again')
})

t.test('sessions per address: unproven and all, with room for a replacement', async (t) => {
  const c = new PrefixSessions(3, 2)
  const a = c.reserve('10.0.0.1', 'self_minted', false)
  const b = c.reserve('10.0.0.1', 'bearerless_duplicate', false)
  t.ok(a && b)
  t.equal(c.hasRoom('10.0.0.1', true), false)
  t.equal(c.reserve('10.0.0.1', 'self_minted', false), null, 'a third unproven one is refused')
  t.ok(c.reserve('10.0.0.1', 'self_minted', true), 'unless it replaces one of its own id')
  t.equal(c.reserve('10.0.0.1', 'key_proven', false), null, 'all three places are taken')
  t.ok(c.hasRoom('10.0.0.2', true), 'another address is untouched')
  a?.()
  a?.()
  t.ok(c.reserve('10.0.0.1', 'key_proven', false), 'a released place is free again, once')
  t.equal(c.reserve('10.0.0.1', 'key_proven', false), null)
})
