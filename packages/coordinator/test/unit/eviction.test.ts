import t from 'tap'
import { makeSession } from '../helpers/fixtures.js'
import type { AuthState, ProviderStatus } from '@poolcoord/protocol'
import { decideRegistration, isIdle, type RegistrationDecision } from '../../src/pool/eviction.js'
import type { ProviderSession } from '../../src/pool/provider-session.js'

const session = makeSession

const existingKinds: { name: string; existing: ProviderSession | undefined }[] = [
  { name: 'none', existing: undefined },
  { name: 'bearer_validated routable', existing: session({ authState: 'bearer_validated' }) },
  { name: 'bearer_validated busy', existing: session({ authState: 'bearer_validated', status: 'busy' }) },
  { name: 'bearer_validated draining', existing: session({ authState: 'bearer_validated', status: 'draining' }) },
  { name: 'bearer_validated slotsFree 0', existing: session({ authState: 'bearer_validated', slotsFree: 0 }) },
  { name: 'bearer_validated in-flight full', existing: session({ authState: 'bearer_validated', inFlight: 4 }) },
  { name: 'bearer_validated unavailable', existing: session({ authState: 'bearer_validated', status: 'unavailable' }) },
  { name: 'bearer_validated degraded', existing: session({ authState: 'bearer_validated', status: 'degraded' }) },
  { name: 'self_minted routable', existing: session({ authState: 'self_minted' }) },
  { name: 'self_minted busy', existing: session({ authState: 'self_minted', status: 'busy' }) },
  { name: 'bearerless_duplicate', existing: session({ authState: 'bearerless_duplicate' }) },
]

const REGISTER: RegistrationDecision = { action: 'register' }
const REPLACE: RegistrationDecision = { action: 'replace' }
const DUP: RegistrationDecision = { action: 'refuse', reason: 'duplicate_never_displaces' }
const DOWNGRADE: RegistrationDecision = { action: 'refuse', reason: 'bearer_downgrade' }

// existing (rows) x incoming (columns: bearer_validated, self_minted, bearerless_duplicate)
const expected: Record<string, [RegistrationDecision, RegistrationDecision, RegistrationDecision]> = {
  none: [REGISTER, REGISTER, REGISTER],
  'bearer_validated routable': [REPLACE, DOWNGRADE, DUP],
  // Serving but not routable: still protected, a replacement would cut its requests off.
  'bearer_validated busy': [REPLACE, DOWNGRADE, DUP],
  'bearer_validated slotsFree 0': [REPLACE, DOWNGRADE, DUP],
  'bearer_validated in-flight full': [REPLACE, DOWNGRADE, DUP],
  'bearer_validated degraded': [REPLACE, DOWNGRADE, DUP],
  // It said it is leaving: a weaker credential may take the slot.
  'bearer_validated draining': [REPLACE, REPLACE, DUP],
  'bearer_validated unavailable': [REPLACE, REPLACE, DUP],
  'self_minted routable': [REPLACE, REPLACE, DUP],
  'self_minted busy': [REPLACE, REPLACE, DUP],
  bearerless_duplicate: [REPLACE, REPLACE, DUP],
}

const incomingKinds: AuthState[] = ['bearer_validated', 'self_minted', 'bearerless_duplicate']

t.test('decideRegistration matrix', async (t) => {
  t.equal(Object.keys(expected).length, existingKinds.length, 'every existing kind has an expected row')
  for (const { name, existing } of existingKinds) {
    const row = expected[name]
    if (row === undefined) throw new Error(`no expectation for ${name}`)
    incomingKinds.forEach((incoming, i) => {
      t.strictSame(decideRegistration(existing, incoming), row[i], `existing ${name} x incoming ${incoming}`)
    })
  }
})

t.test('key rules hold over the whole matrix', async (t) => {
  for (const { name, existing } of existingKinds) {
    if (existing === undefined) continue
    t.equal(decideRegistration(existing, 'bearerless_duplicate').action, 'refuse', `a duplicate never displaces ${name}`)
    t.equal(decideRegistration(existing, 'bearer_validated').action, 'replace', `a bearer always replaces ${name}`)
  }
})

t.test('decideRegistration does not mutate the existing session', async (t) => {
  const existing = session({ authState: 'bearer_validated' })
  const before = structuredClone(existing)
  for (const incoming of incomingKinds) decideRegistration(existing, incoming)
  t.strictSame(existing, before)
})

t.test('isIdle boundary', async (t) => {
  const idle = 90_000
  const last = 1_000_000
  const cases: { name: string; now: number; expected: boolean }[] = [
    { name: 'just received', now: last, expected: false },
    { name: '1 ms before the timeout', now: last + idle - 1, expected: false },
    { name: 'exactly at the timeout', now: last + idle, expected: true },
    { name: '1 ms past the timeout', now: last + idle + 1, expected: true },
    { name: 'clock behind lastInboundAt', now: last - 5, expected: false },
  ]
  for (const c of cases) t.equal(isIdle({ lastInboundAt: last }, c.now, idle), c.expected, c.name)
})

t.test('identity v2: key_proven displaces anything; a bearer alone never displaces a serving key_proven session', async (t) => {
  const keyed = (status: ProviderStatus) => ({ authState: 'key_proven' as const, status })
  for (const existing of ['key_proven', 'bearer_validated', 'self_minted', 'bearerless_duplicate'] as const) {
    t.same(decideRegistration({ authState: existing, status: 'ready' }, 'key_proven'), { action: 'replace' }, `key_proven replaces ${existing}`)
  }
  for (const status of ['ready', 'busy', 'degraded'] as const) {
    t.same(decideRegistration(keyed(status), 'bearer_validated'), { action: 'refuse', reason: 'key_downgrade' }, `bearer vs serving key_proven (${status})`)
    t.same(decideRegistration(keyed(status), 'self_minted'), { action: 'refuse', reason: 'bearer_downgrade' })
    t.same(decideRegistration(keyed(status), 'bearerless_duplicate'), { action: 'refuse', reason: 'duplicate_never_displaces' })
  }
  for (const status of ['draining', 'unavailable'] as const) {
    t.same(decideRegistration(keyed(status), 'bearer_validated'), { action: 'replace' }, `a leaving key_proven session (${status}) may be replaced`)
  }
})
