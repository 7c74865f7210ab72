import t from 'tap'
import { classifyClose, decideReconnect, defaultBackoff, effectiveAttempt, jitteredDelay } from '../../src/reconnect-policy.js'

const RANDOMS = [0, 0.000001, 0.25, 0.5, 0.75, 0.999999]

t.test('full jitter stays within [0, min(cap, base·2^n)]', async (t) => {
  for (let attempt = 0; attempt < 40; attempt++) {
    const ceiling = Math.min(defaultBackoff.capMs, defaultBackoff.baseMs * 2 ** attempt)
    for (const r of RANDOMS) {
      const d = jitteredDelay(attempt, defaultBackoff, r)
      t.ok(d >= 0 && d <= ceiling, `attempt ${attempt}, random ${r}: ${d} within [0, ${ceiling}]`)
    }
  }
  t.equal(jitteredDelay(100, defaultBackoff, 0.999999), defaultBackoff.capMs - 1, 'a huge attempt count is capped, not Infinity')
  t.equal(jitteredDelay(3, defaultBackoff, 0.5), 4000, 'base 1 s · 2^3 · 0.5')
})

t.test('jitter spreads a herd: 1,000 reconnects at attempt 6 cover the window', async (t) => {
  let seed = 42
  const random = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31
  const delays = Array.from({ length: 1000 }, () => jitteredDelay(6, defaultBackoff, random()))
  const buckets = new Array<number>(8).fill(0)
  for (const d of delays) buckets[Math.floor(d / 7500)]!++ // the ceiling at attempt 6 is the 60 s cap
  for (const [i, n] of buckets.entries()) t.ok(n > 80 && n < 170, `bucket ${i} (7.5 s wide) holds ${n} of 1000 (uniform: 125)`)
})

t.test('classification', async (t) => {
  const cases: Array<[number | null, boolean, string]> = [
    [4006, true, 'replaced'],
    [4000, false, 'protocol_error'],
    [4001, true, 'protocol_error'],
    [4003, true, 'protocol_error'],
    [4004, false, 'protocol_error'],
    [4005, true, 'token_refused'],
    [4005, false, 'credential_required'],
    [4429, true, 'pool_full'],
    [4008, false, 'mint_limited'],
    [4008, true, 'mint_limited'],
    [4009, false, 'transient'],
    [1000, true, 'transient'],
    [1001, true, 'transient'],
    [1006, false, 'transient'],
    [4007, true, 'transient'],
    [4010, true, 'transient'],
    [4011, true, 'transient'],
    [4011, false, 'transient'],
    [null, true, 'transient'],
  ]
  for (const [code, withToken, kind] of cases) t.equal(classifyClose({ code, withToken }), kind, `${code} ${withToken ? 'with' : 'without'} a token`)
})

t.test('a refused token never retries faster than the long backoff', async (t) => {
  for (const attempt of [0, 1, 5, 50]) {
    for (const r of RANDOMS) {
      const d = decideReconnect({ code: 4005, withToken: true }, attempt, defaultBackoff, r)
      t.equal(d.action, 'retry')
      if (d.action !== 'retry') continue
      t.ok(d.delayMs >= defaultBackoff.lockoutMinMs && d.delayMs <= defaultBackoff.lockoutMaxMs, `attempt ${attempt}, random ${r}: ${d.delayMs} ms`)
    }
  }
  t.ok(defaultBackoff.lockoutMinMs >= 5 * 60_000, 'the floor is minutes, not seconds')
})

t.test('a mint rate limit (4008) waits the long backoff, with or without a token, at any attempt', async (t) => {
  for (const attempt of [0, 3, 50]) {
    for (const r of RANDOMS) {
      const d = decideReconnect({ code: 4008, withToken: false, tokenAcceptedSinceRefusal: true }, attempt, defaultBackoff, r)
      t.ok(d.action === 'retry' && d.delayMs >= defaultBackoff.lockoutMinMs && d.delayMs <= defaultBackoff.lockoutMaxMs, `attempt ${attempt}, random ${r}`)
    }
  }
})

t.test('one short retry for a token accepted since its last refusal (a store blip), then the long backoff', async (t) => {
  for (const r of RANDOMS) {
    const first = decideReconnect({ code: 4005, withToken: true, tokenAcceptedSinceRefusal: true }, 0, defaultBackoff, r)
    t.ok(
      first.action === 'retry' && first.delayMs >= defaultBackoff.floorMs && first.delayMs <= 6 * defaultBackoff.floorMs,
      `first refusal, random ${r}: 5-30 s`,
    )
    const second = decideReconnect({ code: 4005, withToken: true, tokenAcceptedSinceRefusal: false }, 1, defaultBackoff, r)
    t.ok(second.action === 'retry' && second.delayMs >= defaultBackoff.lockoutMinMs, `second refusal in a row, random ${r}: the long backoff`)
  }
})

t.test('floors and exits', async (t) => {
  for (const r of RANDOMS) {
    const full = decideReconnect({ code: 4429, withToken: true }, 0, defaultBackoff, r)
    t.ok(full.action === 'retry' && full.delayMs >= defaultBackoff.floorMs, 'pool full: at least the floor')
    const tokenless = decideReconnect({ code: 4005, withToken: false }, 0, defaultBackoff, r)
    t.ok(tokenless.action === 'retry' && tokenless.delayMs >= defaultBackoff.floorMs, 'tokenless 4005: at least the floor')
  }
  t.same(decideReconnect({ code: 4006, withToken: true }, 0, defaultBackoff, 0.5), { action: 'exit', kind: 'replaced' })
  t.same(decideReconnect({ code: 4001, withToken: false }, 0, defaultBackoff, 0.5), { action: 'exit', kind: 'protocol_error' })
  t.same(decideReconnect({ code: 1006, withToken: true }, 2, defaultBackoff, 0.5), { action: 'retry', kind: 'transient', delayMs: 2000 })
  t.same(
    decideReconnect({ code: 1001, withToken: true }, 0, defaultBackoff, 0.5),
    { action: 'retry', kind: 'transient', delayMs: 4000 },
    'a coordinator restart spreads even stable agents over 8 s',
  )
})

t.test('the attempt count resets after a stable connection only', async (t) => {
  t.equal(effectiveAttempt(7, null, defaultBackoff), 7, 'never admitted')
  t.equal(effectiveAttempt(7, defaultBackoff.stableMs - 1, defaultBackoff), 7, 'admitted, but not for long')
  t.equal(effectiveAttempt(7, defaultBackoff.stableMs, defaultBackoff), 0, 'stable')
})
