import { AUTH_STATES, PROVIDER_STATUSES, type AuthState, type ProviderStatus } from '@poolcoord/protocol'
import t from 'tap'
import {
  activeLease,
  claimedLease,
  decideClaim,
  handoverDuty,
  isOrphan,
  releaseStep,
  sessionVerdict,
  statusMatters,
  type CurrentLease,
  type LeaseDecision,
} from '../../src/cluster/lease-decision.js'
import type { SessionLease, SessionRef } from '../../src/cluster/lease-value.js'
import { decideRegistration } from '../../src/pool/eviction.js'

const OWNER: SessionRef = { node_id: 'node-a', incarnation: 'inc-a', assigned_id: 'asg-owner' }
const PREV: SessionRef = { node_id: 'node-c', incarnation: 'inc-c', assigned_id: 'asg-prev' }

function lease(auth_state: AuthState, status: ProviderStatus = 'ready', prev?: SessionRef): SessionLease {
  const l: SessionLease = { v: 1, ...OWNER, auth_state, status, state: 'active' }
  return prev === undefined ? l : { ...l, state: 'handover', prev }
}
const found = (l: SessionLease, ownerLive: boolean, prevLive = false): CurrentLease => ({ kind: 'lease', lease: l, ownerLive, prevLive })

const CREATE: LeaseDecision = { action: 'create' }
const DEAD: LeaseDecision = { action: 'take_over_dead', prev: null }
const DEAD_AFTER_PREV: LeaseDecision = { action: 'take_over_dead', prev: PREV }
const HANDOVER_FROM_OWNER: LeaseDecision = { action: 'replace_with_handover', prev: OWNER }
const HANDOVER_FROM_PREV: LeaseDecision = { action: 'replace_with_handover', prev: PREV }
const DOWNGRADE: LeaseDecision = { action: 'refuse', reason: 'bearer_downgrade' }
const DUP: LeaseDecision = { action: 'refuse', reason: 'duplicate_never_displaces' }
const UNREADABLE: LeaseDecision = { action: 'refuse', reason: 'lease_unreadable' }

const KEY_DOWNGRADE: LeaseDecision = { action: 'refuse', reason: 'key_downgrade' }

// The decision table of specs/cluster.md §7.2. Columns: incoming bearer_validated, self_minted,
// bearerless_duplicate; incoming key_proven always decides as bearer_validated does except
// against a serving key_proven owner, so it gets that column (see the rows below the table).
const table: Array<[name: string, current: CurrentLease, expected: [LeaseDecision, LeaseDecision, LeaseDecision]]> = [
  ['no lease', { kind: 'none' }, [CREATE, CREATE, CREATE]],
  ['an unreadable value: an unknown live owner, never free', { kind: 'unreadable' }, [UNREADABLE, UNREADABLE, UNREADABLE]],
  // A dead incarnation routes nothing: the rule sees no session, even a duplicate may take it.
  ['active bearer, owner dead', found(lease('bearer_validated'), false), [DEAD, DEAD, DEAD]],
  ['active self_minted, owner dead', found(lease('self_minted'), false), [DEAD, DEAD, DEAD]],
  [
    'handover, owner dead, prev live: prev must still let go',
    found(lease('bearer_validated', 'ready', PREV), false, true),
    [DEAD_AFTER_PREV, DEAD_AFTER_PREV, DEAD_AFTER_PREV],
  ],
  ['handover, owner dead, prev dead', found(lease('bearer_validated', 'ready', PREV), false, false), [DEAD, DEAD, DEAD]],
  // A live owner: decideRegistration decides, with the lease as the existing session.
  ['active bearer ready, owner live', found(lease('bearer_validated', 'ready'), true), [HANDOVER_FROM_OWNER, DOWNGRADE, DUP]],
  ['active bearer busy (serving, not routable)', found(lease('bearer_validated', 'busy'), true), [HANDOVER_FROM_OWNER, DOWNGRADE, DUP]],
  ['active bearer degraded', found(lease('bearer_validated', 'degraded'), true), [HANDOVER_FROM_OWNER, DOWNGRADE, DUP]],
  ['active bearer draining (leaving)', found(lease('bearer_validated', 'draining'), true), [HANDOVER_FROM_OWNER, HANDOVER_FROM_OWNER, DUP]],
  ['active bearer unavailable (leaving)', found(lease('bearer_validated', 'unavailable'), true), [HANDOVER_FROM_OWNER, HANDOVER_FROM_OWNER, DUP]],
  ['active self_minted', found(lease('self_minted'), true), [HANDOVER_FROM_OWNER, HANDOVER_FROM_OWNER, DUP]],
  ['active bearerless_duplicate', found(lease('bearerless_duplicate'), true), [HANDOVER_FROM_OWNER, HANDOVER_FROM_OWNER, DUP]],
  // In handover the owner has not routed yet; the one that may still route is prev, while it lives.
  ['handover bearer, owner live, prev live', found(lease('bearer_validated', 'ready', PREV), true, true), [HANDOVER_FROM_PREV, DOWNGRADE, DUP]],
  ['handover self_minted, owner live, prev live', found(lease('self_minted', 'ready', PREV), true, true), [HANDOVER_FROM_PREV, HANDOVER_FROM_PREV, DUP]],
  ['handover self_minted, owner live, prev dead', found(lease('self_minted', 'ready', PREV), true, false), [HANDOVER_FROM_OWNER, HANDOVER_FROM_OWNER, DUP]],
  [
    'handover bearer released (unavailable), prev live',
    found(lease('bearer_validated', 'unavailable', PREV), true, true),
    [HANDOVER_FROM_PREV, HANDOVER_FROM_PREV, DUP],
  ],
]

// Identity v2: a key_proven owner. Only another key proof displaces it while it serves.
const keyTable: Array<[name: string, current: CurrentLease, expected: [LeaseDecision, LeaseDecision, LeaseDecision, LeaseDecision]]> = [
  ['active key_proven ready, owner live', found(lease('key_proven', 'ready'), true), [HANDOVER_FROM_OWNER, KEY_DOWNGRADE, DOWNGRADE, DUP]],
  ['active key_proven busy', found(lease('key_proven', 'busy'), true), [HANDOVER_FROM_OWNER, KEY_DOWNGRADE, DOWNGRADE, DUP]],
  ['active key_proven draining (leaving)', found(lease('key_proven', 'draining'), true), [HANDOVER_FROM_OWNER, HANDOVER_FROM_OWNER, HANDOVER_FROM_OWNER, DUP]],
  ['active key_proven, owner dead', found(lease('key_proven'), false), [DEAD, DEAD, DEAD, DEAD]],
]

t.test('decideClaim: the decision table', async (t) => {
  t.strictSame(AUTH_STATES, ['key_proven', 'bearer_validated', 'self_minted', 'bearerless_duplicate'], 'the columns below follow this order')
  for (const [name, current, row] of table) {
    const columns = [row[0], ...row]
    AUTH_STATES.forEach((incoming, i) => t.strictSame(decideClaim(current, incoming), columns[i], `${name} x ${incoming}`))
  }
  for (const [name, current, row] of keyTable) {
    AUTH_STATES.forEach((incoming, i) => t.strictSame(decideClaim(current, incoming), row[i], `${name} x ${incoming}`))
  }
})

t.test('decideClaim refuses exactly when decideRegistration refuses the lease as the existing session', async (t) => {
  for (const auth of AUTH_STATES) {
    for (const status of PROVIDER_STATUSES) {
      for (const prev of [undefined, PREV]) {
        for (const ownerLive of [true, false]) {
          for (const prevLive of [true, false]) {
            const l = lease(auth, status, prev)
            for (const incoming of AUTH_STATES) {
              const rule = decideRegistration(ownerLive ? { authState: auth, status } : undefined, incoming)
              const got = decideClaim(found(l, ownerLive, prevLive), incoming)
              const expected = rule.action === 'refuse' ? rule : { action: rule.action === 'register' ? 'take_over_dead' : 'replace_with_handover' }
              t.match(got, expected, `${auth}/${status}/${prev ? 'handover' : 'active'} live=${ownerLive}/${prevLive} x ${incoming}`)
            }
          }
        }
      }
    }
  }
})

t.test('claimedLease: active without a prev, handover with one', async (t) => {
  const me = { node_id: 'node-b', incarnation: 'inc-b', assigned_id: 'asg-b', auth_state: 'bearer_validated' as const, status: 'ready' as const }
  const base = { v: 1, node_id: 'node-b', incarnation: 'inc-b', assigned_id: 'asg-b', auth_state: 'bearer_validated', status: 'ready' }
  t.strictSame(claimedLease(me, { action: 'create' }), { ...base, state: 'active' })
  t.strictSame(claimedLease(me, { action: 'take_over_dead', prev: null }), { ...base, state: 'active' })
  t.strictSame(claimedLease(me, { action: 'take_over_dead', prev: PREV }), { ...base, state: 'handover', prev: PREV })
  t.strictSame(claimedLease(me, { action: 'replace_with_handover', prev: OWNER }), { ...base, state: 'handover', prev: OWNER })
  t.strictSame(activeLease(lease('self_minted', 'busy', PREV)), lease('self_minted', 'busy'), 'activeLease drops prev and keeps the rest')
})

t.test('sessionVerdict: where a local session stands against its lease', async (t) => {
  const other: SessionRef = { ...OWNER, assigned_id: 'asg-other' }
  const cases: Array<[string, SessionLease | null, SessionRef, boolean, string]> = [
    ['named, active', lease('bearer_validated'), OWNER, false, 'routable'],
    ['named, active (prev liveness is irrelevant)', lease('bearer_validated'), OWNER, true, 'routable'],
    ['named, handover, prev live', lease('bearer_validated', 'ready', PREV), OWNER, true, 'wait'],
    ['named, handover, prev dead', lease('bearer_validated', 'ready', PREV), OWNER, false, 'promote'],
    ['another assigned_id on the same node', lease('bearer_validated'), other, false, 'displaced'],
    ['same assigned_id, older incarnation', lease('bearer_validated'), { ...OWNER, incarnation: 'inc-old' }, false, 'displaced'],
    ['the lease is gone (or unreadable)', null, OWNER, false, 'displaced'],
  ]
  for (const [name, l, mine, prevLive, expected] of cases) t.equal(sessionVerdict(l, mine, prevLive), expected, name)
})

t.test('handoverDuty: the old owner closes only its matching session, and confirms whenever addressed', async (t) => {
  const me = { node_id: PREV.node_id, incarnation: PREV.incarnation }
  const l = lease('bearer_validated', 'ready', PREV)
  t.strictSame(handoverDuty(l, me, PREV.assigned_id), { close: PREV.assigned_id }, 'prev matches the local session: close it, then confirm')
  t.strictSame(handoverDuty(l, me, undefined), { close: null }, 'no local session (closed, or an orphan lease): confirm, close nothing')
  t.strictSame(handoverDuty(l, me, 'asg-newer'), { close: null }, 'a different local session is not the one handed over: it is left alone')
  t.equal(
    handoverDuty(l, { ...me, incarnation: 'inc-later' }, PREV.assigned_id),
    null,
    'addressed to an earlier incarnation of this node: not ours (that one is dead)',
  )
  t.equal(handoverDuty(l, { node_id: 'node-z', incarnation: 'inc-c' }, PREV.assigned_id), null, 'another node')
  t.equal(handoverDuty(lease('bearer_validated'), me, PREV.assigned_id), null, 'an active lease asks nothing')
  t.equal(handoverDuty(null, me, PREV.assigned_id), null, 'no lease asks nothing')
})

t.test('isOrphan: an active lease naming this incarnation but no session it holds', async (t) => {
  const me = { node_id: OWNER.node_id, incarnation: OWNER.incarnation }
  t.ok(isOrphan(lease('bearer_validated'), me, undefined))
  t.ok(isOrphan(lease('bearer_validated'), me, 'asg-other'))
  t.notOk(isOrphan(lease('bearer_validated'), me, OWNER.assigned_id), 'held (or being claimed) here')
  t.notOk(isOrphan(lease('bearer_validated', 'ready', PREV), me, undefined), 'a handover still protects its prev')
  t.notOk(isOrphan(lease('bearer_validated'), { ...me, incarnation: 'inc-x' }, undefined), 'another incarnation')
  t.notOk(isOrphan(null, me, undefined))
})

t.test('releaseStep: delete an active lease; keep a handover, marked unavailable', async (t) => {
  t.strictSame(releaseStep(lease('bearer_validated')), { op: 'delete' })
  t.strictSame(releaseStep(lease('bearer_validated', 'busy', PREV)), { op: 'write', lease: lease('bearer_validated', 'unavailable', PREV) })
})

t.test('statusMatters: written only when decideRegistration would answer a newcomer differently', async (t) => {
  const cases: Array<[AuthState, ProviderStatus, ProviderStatus, boolean]> = [
    ['bearer_validated', 'ready', 'busy', false],
    ['bearer_validated', 'busy', 'degraded', false],
    ['bearer_validated', 'ready', 'draining', true],
    ['bearer_validated', 'busy', 'unavailable', true],
    ['bearer_validated', 'draining', 'unavailable', false],
    ['bearer_validated', 'draining', 'ready', true],
    ['self_minted', 'ready', 'draining', false],
    ['bearerless_duplicate', 'ready', 'unavailable', false],
  ]
  for (const [auth, from, to, expected] of cases) t.equal(statusMatters({ auth_state: auth, status: from }, to), expected, `${auth}: ${from} -> ${to}`)
})
