import t from 'tap'
import { ManualClock } from '../../src/clock.js'
import { apiError, buyer } from '../helpers/buyer.js'
import { startTestService } from '../helpers/service.js'
import { TestProvider, answer } from '../helpers/test-provider.js'

/*
 * Regression test from an adversarial review of the ejection cap: a provider that also
 * advertises a model nobody else serves is always released for that model (1 of 1 cooling,
 * allowance 0). When a release held for all of a provider's models, its cooldown on the shared
 * model was void: it failed at once, kept all its slots free, and won every selection over a
 * healthy provider with room. Releases now hold for their own model only, and /poolz shows the
 * provider both cooling_down (for the shared model) and cooldown_capped (for its private one).
 */

const messages = [{ role: 'user' as const, content: 'hi' }]

t.test('a private extra model does not lift the cooldown on the shared model', async (t) => {
  const clock = new ManualClock()
  const s = await startTestService(t, { clock })
  const evil = await TestProvider.join(s.wsUrl, 'evil', { hello: { max_concurrency: 8, supported_models: ['evil-only-model'] } })
  evil.serve((req, p) => p.end(req.request_id, 'error_internal'))
  const steady = await TestProvider.join(s.wsUrl, 'steady', { handler: answer() })

  // evil has the most slots: the first request goes to it and fails (no failover for error_internal).
  t.equal((await apiError(buyer(s.url).chat.completions.create({ model: 'test-model', messages }))).status, 502)
  const row = (await s.poolz()).pool.find((r) => r.provider_id === 'evil')
  t.comment(JSON.stringify({ cooling_down: row?.cooling_down, cooldown_capped: row?.cooldown_capped }))
  t.equal(row?.cooling_down, true, 'evil is 1 of 2 test-model providers cooling: within the 50% allowance, so ranked last')
  t.equal(row?.cooldown_capped, true, 'and released for evil-only-model, which it serves alone: /poolz shows both')

  for (let i = 0; i < 5; i++) {
    const r = await buyer(s.url)
      .chat.completions.create({ model: 'test-model', messages })
      .then(() => 200)
      .catch((e: { status?: number }) => e.status ?? 0)
    t.equal(r, 200, `request ${i} is served by the healthy provider`)
  }
  t.equal(steady.requests.length, 5, 'steady got the traffic')
  t.equal(evil.requests.length, 1, 'evil got only the request that started its cooldown')
})
