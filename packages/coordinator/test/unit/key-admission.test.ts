import t from 'tap'
import { decideKeyAdmission, tokenRenewal, type KeyDecision, type KeyFacts } from '../../src/admission/key-admission.js'
import type { PinnedKey } from '../../src/tokens/identity-store.js'

const NOW = 1_800_000_000_000
const DAY = 86_400_000
const TTL = 30 * DAY
const CUR = 'C'.repeat(43)
const PREV = 'P'.repeat(43)
const OTHER = 'O'.repeat(43)
const NEXT = 'N'.repeat(43)

const pin = (over: Partial<PinnedKey> = {}): PinnedKey => ({
  providerId: 'mac-1',
  publicKey: CUR,
  generation: 3,
  previousKey: PREV,
  previousValidUntil: NOW + DAY,
  revoked: false,
  ...over,
})
const fresh = { providerId: 'mac-1', inGrace: false, expiresAt: NOW + 20 * DAY }

function facts(over: Partial<KeyFacts>): KeyFacts {
  return {
    intent: 'connect',
    helloProviderId: 'mac-1',
    key: CUR,
    nextKey: null,
    bearer: fresh,
    pin: pin(),
    requireProviderTokens: false,
    liveSelfMinted: false,
    now: NOW,
    tokenTtlMs: TTL,
    ...over,
  }
}

const reject = (event: string): KeyDecision => ({ kind: 'reject', event }) as KeyDecision
const KEEP: KeyDecision = { kind: 'connect', renewal: 'keep', rotation: null, event: 'admission.key_proven' }

// The table at the top of key-admission.ts, row by row.
const table: Array<[string, Partial<KeyFacts>, KeyDecision]> = [
  ['a bearer bound to another id', { bearer: { ...fresh, providerId: 'other' } }, reject('admission.binding_mismatch')],
  ['a revoked identity, any intent', { pin: pin({ revoked: true }), intent: 'recover', bearer: null }, reject('admission.identity_revoked')],
  ['revoked, connect with bearer and the current key', { pin: pin({ revoked: true }) }, reject('admission.identity_revoked')],
  // no pin
  ['enroll, tokenless, new id', { pin: null, intent: 'enroll', bearer: null }, { kind: 'enroll_new', healUnused: true, event: 'admission.key_enrolled' }],
  ['enroll, tokenless, tokens required', { pin: null, intent: 'enroll', bearer: null, requireProviderTokens: true }, reject('admission.tokens_required')],
  ['enroll, tokenless, a live self-minted holder', { pin: null, intent: 'enroll', bearer: null, liveSelfMinted: true }, reject('admission.duplicate_refused')],
  ['enroll with a bearer, no pin: pin in place', { pin: null, intent: 'enroll' }, { kind: 'pin_in_place', event: 'admission.key_pinned_in_place' }],
  [
    'enroll with a bearer, tokens required: still pins',
    { pin: null, intent: 'enroll', requireProviderTokens: true },
    { kind: 'pin_in_place', event: 'admission.key_pinned_in_place' },
  ],
  ['connect, no pin', { pin: null }, reject('admission.key_not_pinned')],
  ['connect, no pin, no bearer', { pin: null, bearer: null }, reject('admission.bearer_required')],
  ['recover, no pin', { pin: null, intent: 'recover', bearer: null }, reject('admission.key_not_pinned')],
  ['rotate, no pin', { pin: null, intent: 'rotate', nextKey: NEXT }, reject('admission.key_not_pinned')],
  ['rotate, no pin, no bearer', { pin: null, intent: 'rotate', nextKey: NEXT, bearer: null }, reject('admission.bearer_required')],
  // pinned
  ['enroll, tokenless, pinned: recover instead', { intent: 'enroll', bearer: null }, reject('admission.key_pinned')],
  ['enroll, tokenless, pinned, another key', { intent: 'enroll', bearer: null, key: OTHER }, reject('admission.key_mismatch')],
  ['enroll with a bearer, same key: as connect', { intent: 'enroll' }, KEEP],
  ['enroll with a bearer, another key', { intent: 'enroll', key: OTHER }, reject('admission.key_mismatch')],
  ['connect, current key', {}, KEEP],
  ['connect, previous key in its window', { key: PREV }, KEEP],
  ['connect, previous key after its window', { key: PREV, pin: pin({ previousValidUntil: NOW }) }, reject('admission.key_mismatch')],
  ['connect, another key (a stolen bearer)', { key: OTHER }, reject('admission.key_mismatch')],
  ['connect without a bearer', { bearer: null }, reject('admission.bearer_required')],
  ['recover, current key', { intent: 'recover', bearer: null }, { kind: 'recover', event: 'admission.key_recovered' }],
  ['recover with a bearer too', { intent: 'recover' }, { kind: 'recover', event: 'admission.key_recovered' }],
  ['recover, previous key: never', { intent: 'recover', bearer: null, key: PREV }, reject('admission.key_mismatch')],
  ['recover, another key', { intent: 'recover', bearer: null, key: OTHER }, reject('admission.key_mismatch')],
  [
    'rotate, current key',
    { intent: 'rotate', nextKey: NEXT },
    { kind: 'connect', renewal: 'keep', rotation: { generation: 3, nextKey: NEXT }, event: 'admission.key_rotated' },
  ],
  ['rotate without a bearer', { intent: 'rotate', nextKey: NEXT, bearer: null }, reject('admission.bearer_required')],
  ['rotate replayed: previous key, next = current', { intent: 'rotate', key: PREV, nextKey: CUR }, KEEP],
  ['rotate by the previous key to another next key', { intent: 'rotate', key: PREV, nextKey: NEXT }, reject('admission.key_mismatch')],
  [
    'rotate replayed after the window',
    { intent: 'rotate', key: PREV, nextKey: CUR, pin: pin({ previousValidUntil: NOW - 1 }) },
    reject('admission.key_mismatch'),
  ],
  ['rotate by another key', { intent: 'rotate', key: OTHER, nextKey: NEXT }, reject('admission.key_mismatch')],
]

t.test('decideKeyAdmission: the decision table', async (t) => {
  for (const [name, over, expected] of table) t.strictSame(decideKeyAdmission(facts(over)), expected, name)
})

t.test('renewal: keep while young, supersede past half the TTL or with no expiry, replace the successor while in grace', async (t) => {
  t.equal(tokenRenewal({ inGrace: false, expiresAt: NOW + 16 * DAY }, NOW, TTL), 'keep')
  t.equal(tokenRenewal({ inGrace: false, expiresAt: NOW + 15 * DAY - 1 }, NOW, TTL), 'supersede')
  t.equal(tokenRenewal({ inGrace: false, expiresAt: null }, NOW, TTL), 'supersede', 'an issued token of a pinned id gets an expiry by renewal')
  t.equal(tokenRenewal({ inGrace: true, expiresAt: NOW + 20 * DAY }, NOW, TTL), 'replace_successor')
  t.strictSame(decideKeyAdmission(facts({ bearer: { ...fresh, expiresAt: NOW + DAY } })), { ...KEEP, renewal: 'supersede' })
  t.strictSame(decideKeyAdmission(facts({ bearer: { ...fresh, inGrace: true } })), { ...KEEP, renewal: 'replace_successor' })
})
