import t from 'tap'
import { COOLDOWN_MAX_MS, afterFailure, afterSuccess, isCoolingDown } from '../../src/pool/provider-health.js'

t.test('cooldown doubles per failure in a row, is capped, and one success clears it', async (t) => {
  let h = afterSuccess()
  const now = 10_000
  const lengths: number[] = []
  for (let i = 0; i < 10; i++) {
    h = afterFailure(h, now)
    lengths.push(h.cooldownUntil - now)
  }
  t.same(lengths, [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000, 60000])
  t.ok(isCoolingDown(h, now + COOLDOWN_MAX_MS - 1))
  t.notOk(isCoolingDown(h, now + COOLDOWN_MAX_MS))
  for (let i = 0; i < 1000; i++) h = afterFailure(h, now)
  t.equal(h.cooldownUntil - now, COOLDOWN_MAX_MS, 'no overflow after many failures')
  t.same(afterSuccess(), { consecutiveFailures: 0, cooldownUntil: 0 })
  t.notOk(isCoolingDown(afterSuccess(), now))
})
