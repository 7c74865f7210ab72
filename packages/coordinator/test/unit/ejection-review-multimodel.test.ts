/**
 * Regression test from an adversarial review of the ejection cap. A provider that advertises a
 * second model nobody else serves is always "one of one cooling" there (allowance
 * floor(1 * 50%) = 0), so it is always released for that model. When a release held for all of a
 * provider's models, its cooldown on the shared model was void, and a provider failing every
 * request at once won every selection again (specs/buyer-api.md §3, Cooldown). Releases are now
 * kept per model and selection reads the requested model's only.
 */
import t from 'tap'
import { EjectionCap } from '../../src/pool/ejection-cap.js'
import type { ProviderSession } from '../../src/pool/provider-session.js'
import { Registry } from '../../src/pool/registry.js'
import { selectProvider } from '../../src/routing/select-provider.js'
import { makeSession } from '../helpers/fixtures.js'

const NOW = 1_000_000
const s = (providerId: string, over: Partial<ProviderSession> = {}) => makeSession({ providerId, assignedId: `as-${providerId}`, ...over })

t.test('a release for a private second model does not lift the cooldown on a shared model', async (t) => {
  const reg = new Registry<null>()
  const cap = new EjectionCap(50)
  // Three honest providers of llama, busy with work (2 free slots each).
  for (const id of ['h1', 'h2', 'h3']) reg.register(s(id, { slotsFree: 2 }), null)
  // The attacker also advertises a model name only it serves.
  reg.register(s('evil', { models: ['llama', 'evil-private-model'], slotsFree: 4 }), null)
  reg.recordOutcome('evil', 'provider_internal', NOW)

  // For llama alone: 1 of 4 cooling, allowance 2: the cap does not bind and evil should rank last.
  const req = { model: 'llama', pin: null, exclude: new Set<string>() }
  let evilFirst = 0
  for (let i = 0; i < 50; i++) {
    const now = NOW + 1 + i
    const sel = selectProvider(reg.sessionList(), req, Math.random, now, cap.released(reg, now))
    if (sel.ok && sel.session.providerId === 'evil') evilFirst++
    if (sel.ok && sel.session.providerId === 'evil') reg.recordOutcome('evil', 'provider_internal', now) // fails instantly again
  }
  t.equal(evilFirst, 0, 'a cooling provider is never chosen for llama while three healthy llama providers have room')
})
