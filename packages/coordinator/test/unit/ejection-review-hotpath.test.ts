/**
 * Regression test from an adversarial review of the ejection cap. Every failure (and every
 * success that ends a run) moves routingVersion; when each one made the next request recompute
 * cooldownReleases over the whole pool, a provider (or a buyer, with bad parameters on unpinned
 * requests) failing every request turned selection, which samples SAMPLE candidates in a large
 * pool, back into O(pool) per request. The EjectionCap now recomputes for such changes at most
 * every MIN_RECOMPUTE_MS (pool/ejection-cap.ts).
 */
import t from 'tap'
import { EjectionCap, type CapSource } from '../../src/pool/ejection-cap.js'
import type { ProviderSession } from '../../src/pool/provider-session.js'
import { Registry } from '../../src/pool/registry.js'
import { SAMPLE, selectProvider } from '../../src/routing/select-provider.js'
import { makeSession } from '../helpers/fixtures.js'

const NOW = 1_000_000
const N = 5_000
const REQUESTS = 100

t.test('a stream of failing requests recomputes the cap at most every MIN_RECOMPUTE_MS, not on every request', async (t) => {
  const reg = new Registry<null>()
  for (let i = 0; i < N; i++) reg.register(makeSession({ providerId: `p-${i}`, assignedId: `as-${i}` }), null)
  let reads = 0
  const counted = new Proxy(reg.sessionList() as ProviderSession[], {
    get(target, key, recv) {
      if (typeof key === 'string' && /^\d+$/.test(key)) reads++
      return Reflect.get(target, key, recv)
    },
  })
  const source: CapSource = {
    sessionList: () => counted,
    get routingVersion() {
      return reg.routingVersion
    },
  }
  const cap = new EjectionCap(50)
  const req = { model: 'llama', pin: null, exclude: new Set<string>() }
  cap.released(source, NOW)
  reads = 0
  for (let i = 0; i < REQUESTS; i++) {
    const now = NOW + 1 + i // 100 requests within 100 ms
    const released = cap.released(source, now)
    const sel = selectProvider(reg.sessionList(), req, Math.random, now, released)
    // Whichever provider served fails the request (bad parameters -> error_internal).
    if (sel.ok) reg.recordOutcome(sel.session.providerId, 'provider_internal', now)
  }
  t.comment(`cap read ${reads} session slots over ${REQUESTS} requests in a pool of ${N}`)
  t.ok(reads <= 4 * N + REQUESTS * SAMPLE, 'the cap is not recomputed over the whole pool on every failing request')
})
