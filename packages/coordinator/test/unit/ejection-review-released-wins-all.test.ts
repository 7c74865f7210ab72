/**
 * Regression test from an adversarial review of the ejection cap. When a released provider
 * ranked as healthy, it won on free slots, and a provider that fails at once always has all its
 * slots free: it won (nearly) every selection, not a share, and with error_internal (no failover)
 * every request failed while the healthy provider, which had room, sat idle. Envoy's
 * max_ejection_percent only puts the host back in the load-balancing set. Released providers now
 * rank in a tier of their own that wins in proportion to its size (routing/select-provider.ts).
 */
import t from 'tap'
import { EjectionCap } from '../../src/pool/ejection-cap.js'
import type { ProviderSession } from '../../src/pool/provider-session.js'
import { Registry } from '../../src/pool/registry.js'
import { selectProvider } from '../../src/routing/select-provider.js'
import { makeSession } from '../helpers/fixtures.js'

const NOW = 1_000_000
const s = (providerId: string, over: Partial<ProviderSession> = {}) => makeSession({ providerId, assignedId: `as-${providerId}`, ...over })

t.test('2 failing + 1 healthy with room: the released failing one gets its share, not every request', async (t) => {
  const reg = new Registry<null>()
  const cap = new EjectionCap(50)
  reg.register(s('bad-1'), null)
  reg.register(s('bad-2'), null)
  reg.register(s('good', { inFlight: 1 }), null) // working: 3 of 4 slots free
  reg.recordOutcome('bad-1', 'provider_internal', NOW)
  reg.recordOutcome('bad-2', 'provider_internal', NOW + 1)
  const req = { model: 'llama', pin: null, exclude: new Set<string>() }
  const counts: Record<string, number> = {}
  let failed = 0
  for (let i = 0; i < 200; i++) {
    const now = NOW + 2 + i
    const sel = selectProvider(reg.sessionList(), req, Math.random, now, cap.released(reg, now))
    if (!sel.ok) continue
    const id = sel.session.providerId
    counts[id] = (counts[id] ?? 0) + 1
    if (id === 'good') reg.recordOutcome(id, null, now)
    else {
      failed++
      reg.recordOutcome(id, 'provider_internal', now) // error_internal: no failover, the buyer gets a 502
    }
  }
  t.comment(JSON.stringify(counts))
  t.ok((counts.good ?? 0) >= 50, `the healthy provider with room serves a fair share (got ${counts.good ?? 0} of 200)`)
  t.ok(failed <= 150, `at most the failing share of requests fail (got ${failed} of 200)`)
})
