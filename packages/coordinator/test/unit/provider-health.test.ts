import t from 'tap'
import { COOLDOWN_MAX_MS, afterFailure, afterSuccess, isCoolingDown } from '../../src/pool/provider-health.js'

t.test('cooldown doubles per failure in a row, is capped, and one success clears it', async (t) => {
  let h = afterSuccess()
  const now = 10_000
  const lengths: number[] = []
  for (let i = 0; i < 10; i++) {
    h = afterFailure(h, now, i % 2 === 0 ? 'provider_internal' : 'first_chunk_timeout')
    lengths.push(h.cooldownUntil - now)
  }
  t.same(lengths, [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000, 60000])
  t.ok(isCoolingDown(h, now + COOLDOWN_MAX_MS - 1))
  t.notOk(isCoolingDown(h, now + COOLDOWN_MAX_MS))
  t.equal(h.lastFailure, 'first_chunk_timeout', 'the latest failure names the run')
  t.equal(afterFailure(h, now + 5, 'disconnect').failingSince, now, 'the run is dated by its first failure')
  for (let i = 0; i < 1000; i++) h = afterFailure(h, now, 'disconnect')
  t.equal(h.cooldownUntil - now, COOLDOWN_MAX_MS, 'no overflow after many failures')
  t.strictSame(afterSuccess(), { consecutiveFailures: 0, cooldownUntil: 0, lastFailure: null, failingSince: 0 }, 'a success clears the reason and the run')
  t.equal(afterFailure(afterSuccess(), now + 9, 'disconnect').failingSince, now + 9, 'the next failure starts a new run')
  t.notOk(isCoolingDown(afterSuccess(), now))
})
