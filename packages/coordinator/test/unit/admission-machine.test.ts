import t from 'tap'
import { initialState, transition, type Effect, type Input, type State } from '../../src/admission/admission-machine.js'

/** Feeds a scripted sequence of inputs from initialState; returns every effect and the final step. */
function run(inputs: Input[]): { effects: Effect[]; final: Effect; state: State } {
  let state: State = initialState
  const effects: Effect[] = []
  for (const input of inputs) {
    const step = transition(state, input)
    effects.push(step.effect)
    state = step.state
  }
  const final = effects[effects.length - 1]
  if (final === undefined) throw new Error('run() needs at least one input')
  return { effects, final, state }
}

const ID = 'mac-1'
const tokenless = (liveSelfMinted = false, pinned = false): Input => ({
  type: 'hello',
  helloProviderId: ID,
  bearerProviderId: null,
  liveSelfMinted,
  pinned,
})
const withBearer = (bearerProviderId: string, liveSelfMinted = false, pinned = false): Input => ({
  type: 'hello',
  helloProviderId: ID,
  bearerProviderId,
  liveSelfMinted,
  pinned,
})
const revoked = (r: boolean): Input => ({ type: 'revoked_unused', revoked: r })
const hasActive = (a: boolean): Input => ({ type: 'has_active', active: a })
const issued: Input = { type: 'issued' }
const conflict: Input = { type: 'issue_conflict' }
const storeError: Input = { type: 'store_error' }

const REVOKE: Effect = { kind: 'revoke_unused' }
const HAS_ACTIVE: Effect = { kind: 'has_active' }
const ISSUE: Effect = { kind: 'issue' }
const STORE_ERROR: Effect = { kind: 'reject', event: 'admission.store_error' }

interface Row {
  name: string
  inputs: Input[]
  /** Every effect, in order; the last one is the decision. */
  effects: Effect[]
}

// One entry per row of the decision table in the module header (and its variants).
const table: Row[] = [
  {
    name: 'row 1: bearer validated, bound to the hello id',
    inputs: [withBearer(ID)],
    effects: [{ kind: 'admit', authState: 'bearer_validated', withToken: false, event: 'admission.bearer_validated' }],
  },
  {
    name: 'row 1: bearer validated wins even when a live self-minted session exists',
    inputs: [withBearer(ID, true)],
    effects: [{ kind: 'admit', authState: 'bearer_validated', withToken: false, event: 'admission.bearer_validated' }],
  },
  {
    name: 'row 2: bearer bound to another id',
    inputs: [withBearer('someone-else')],
    effects: [{ kind: 'reject', event: 'admission.binding_mismatch' }],
  },
  {
    name: 'row 2: bearer bound to another id, live self-minted session',
    inputs: [withBearer('someone-else', true)],
    effects: [{ kind: 'reject', event: 'admission.binding_mismatch' }],
  },
  {
    name: 'row 2: binding compares ids exactly (case matters)',
    inputs: [withBearer('MAC-1')],
    effects: [{ kind: 'reject', event: 'admission.binding_mismatch' }],
  },
  {
    name: 'row 3: brand-new id is minted',
    inputs: [tokenless(), revoked(false), hasActive(false), issued],
    effects: [REVOKE, HAS_ACTIVE, ISSUE, { kind: 'admit', authState: 'self_minted', withToken: true, event: 'admission.minted' }],
  },
  {
    name: 'row 4: self-heal of an unused self-minted row',
    inputs: [tokenless(), revoked(true), issued],
    effects: [REVOKE, ISSUE, { kind: 'admit', authState: 'self_minted', withToken: true, event: 'admission.self_heal' }],
  },
  {
    name: 'row 5: TOFU reject when an active row is used or operator-issued',
    inputs: [tokenless(), revoked(false), hasActive(true)],
    effects: [REVOKE, HAS_ACTIVE, { kind: 'reject', event: 'admission.tofu_reject' }],
  },
  {
    name: 'row 6: live self-minted session goes straight to issue; conflict quarantines',
    inputs: [tokenless(true), conflict],
    effects: [ISSUE, { kind: 'admit', authState: 'bearerless_duplicate', withToken: false, event: 'admission.duplicate_quarantined' }],
  },
  {
    name: 'row 6 variant: live self-minted flag but issue succeeds => minted (not self_heal)',
    inputs: [tokenless(true), issued],
    effects: [ISSUE, { kind: 'admit', authState: 'self_minted', withToken: true, event: 'admission.minted' }],
  },
  {
    name: 'row 6: lost race after self-heal revoke',
    inputs: [tokenless(), revoked(true), conflict],
    effects: [REVOKE, ISSUE, { kind: 'admit', authState: 'bearerless_duplicate', withToken: false, event: 'admission.duplicate_quarantined' }],
  },
  {
    name: 'row 6: lost race for a brand-new id',
    inputs: [tokenless(), revoked(false), hasActive(false), conflict],
    effects: [REVOKE, HAS_ACTIVE, ISSUE, { kind: 'admit', authState: 'bearerless_duplicate', withToken: false, event: 'admission.duplicate_quarantined' }],
  },
  // Row 7: a store error at every step.
  { name: 'row 7: store_error as the very first input', inputs: [storeError], effects: [STORE_ERROR] },
  { name: 'row 7: store_error while revoking unused', inputs: [tokenless(), storeError], effects: [REVOKE, STORE_ERROR] },
  {
    name: 'row 7: store_error while checking active',
    inputs: [tokenless(), revoked(false), storeError],
    effects: [REVOKE, HAS_ACTIVE, STORE_ERROR],
  },
  {
    name: 'row 7: store_error while issuing (new id)',
    inputs: [tokenless(), revoked(false), hasActive(false), storeError],
    effects: [REVOKE, HAS_ACTIVE, ISSUE, STORE_ERROR],
  },
  {
    name: 'row 7: store_error while issuing (self-heal)',
    inputs: [tokenless(), revoked(true), storeError],
    effects: [REVOKE, ISSUE, STORE_ERROR],
  },
  {
    name: 'row 7: store_error while issuing (live self-minted)',
    inputs: [tokenless(true), storeError],
    effects: [ISSUE, STORE_ERROR],
  },
  // Unexpected inputs for a state fail closed.
  { name: 'unexpected: issued in start', inputs: [issued], effects: [STORE_ERROR] },
  { name: 'unexpected: issue_conflict in start', inputs: [conflict], effects: [STORE_ERROR] },
  { name: 'unexpected: revoked_unused in start', inputs: [revoked(true)], effects: [STORE_ERROR] },
  { name: 'unexpected: has_active in start', inputs: [hasActive(false)], effects: [STORE_ERROR] },
  { name: 'unexpected: issued in revoking_unused', inputs: [tokenless(), issued], effects: [REVOKE, STORE_ERROR] },
  { name: 'unexpected: issue_conflict in revoking_unused', inputs: [tokenless(), conflict], effects: [REVOKE, STORE_ERROR] },
  { name: 'unexpected: has_active in revoking_unused', inputs: [tokenless(), hasActive(false)], effects: [REVOKE, STORE_ERROR] },
  { name: 'unexpected: second hello in revoking_unused', inputs: [tokenless(), tokenless()], effects: [REVOKE, STORE_ERROR] },
  {
    name: 'unexpected: issued in checking_active',
    inputs: [tokenless(), revoked(false), issued],
    effects: [REVOKE, HAS_ACTIVE, STORE_ERROR],
  },
  {
    name: 'unexpected: revoked_unused in checking_active',
    inputs: [tokenless(), revoked(false), revoked(true)],
    effects: [REVOKE, HAS_ACTIVE, STORE_ERROR],
  },
  {
    name: 'unexpected: has_active in issuing',
    inputs: [tokenless(true), hasActive(false)],
    effects: [ISSUE, STORE_ERROR],
  },
  {
    name: 'unexpected: revoked_unused in issuing',
    inputs: [tokenless(), revoked(true), revoked(true)],
    effects: [REVOKE, ISSUE, STORE_ERROR],
  },
  { name: 'unexpected: hello in issuing', inputs: [tokenless(true), withBearer(ID)], effects: [ISSUE, STORE_ERROR] },
]

t.test('decision table', async (t) => {
  for (const row of table) {
    const { effects, final, state } = run(row.inputs)
    t.strictSame(effects, row.effects, `${row.name}: effect sequence`)
    const terminal = final.kind === 'admit' || final.kind === 'reject'
    t.ok(terminal, `${row.name}: ends in a decision`)
    t.equal(state.name, 'done', `${row.name}: final state is done`)
  }
})

// Every input kind, with every flag combination, for exhaustive checks.
const allInputs: Input[] = [
  withBearer(ID),
  withBearer(ID, true),
  withBearer('other'),
  withBearer('other', true),
  tokenless(),
  tokenless(true),
  revoked(true),
  revoked(false),
  hasActive(true),
  hasActive(false),
  issued,
  conflict,
  storeError,
]

t.test('any input in done fails closed with a store_error reject', async (t) => {
  // Reach 'done' through every terminal row, then feed every possible input.
  const terminalScripts = table.map((r) => r.inputs)
  let checked = 0
  for (const script of terminalScripts) {
    for (const input of allInputs) {
      const { effects, final, state } = run([...script, input])
      t.strictSame(final, STORE_ERROR, `after ${effects.length - 1} steps, ${input.type} in done`)
      t.equal(state.name, 'done')
      checked++
    }
  }
  t.equal(checked, terminalScripts.length * allInputs.length)
  t.strictSame(transition({ name: 'done' }, issued), { state: { name: 'done' }, effect: STORE_ERROR })
})

t.test('intermediate states between effects', async (t) => {
  t.strictSame(transition(initialState, tokenless()).state, { name: 'revoking_unused' })
  t.strictSame(transition(initialState, tokenless(true)).state, { name: 'issuing', healing: false })
  t.strictSame(transition({ name: 'revoking_unused' }, revoked(true)).state, { name: 'issuing', healing: true })
  t.strictSame(transition({ name: 'revoking_unused' }, revoked(false)).state, { name: 'checking_active' })
  t.strictSame(transition({ name: 'checking_active' }, hasActive(false)).state, { name: 'issuing', healing: false })
  t.strictSame(initialState, { name: 'start' })
})

t.test('exhaustive: a token is only handed out after an issue effect', async (t) => {
  // Explore every input sequence from initialState until 'done' (depth-bounded).
  const MAX_DEPTH = 6
  let paths = 0
  let tokenAdmits = 0
  const violations: string[] = []
  const explore = (state: State, history: Effect[], trail: string[]): void => {
    if (state.name === 'done' || history.length >= MAX_DEPTH) {
      paths++
      return
    }
    for (const input of allInputs) {
      const step = transition(state, input)
      const nextTrail = [...trail, input.type]
      const e = step.effect
      if (e.kind === 'admit' && e.withToken) {
        tokenAdmits++
        if (history[history.length - 1]?.kind !== 'issue') violations.push(`token without issue: ${nextTrail.join(' > ')}`)
        if (e.authState !== 'self_minted') violations.push(`token with ${e.authState}: ${nextTrail.join(' > ')}`)
      }
      if (e.kind === 'admit' && !e.withToken && e.authState === 'self_minted') {
        violations.push(`self_minted without token: ${nextTrail.join(' > ')}`)
      }
      const decided = e.kind === 'admit' || e.kind === 'reject'
      if (decided !== (step.state.name === 'done')) violations.push(`decision/done mismatch: ${nextTrail.join(' > ')}`)
      explore(step.state, [...history, e], nextTrail)
    }
  }
  explore(initialState, [], [])
  t.strictSame(violations, [])
  t.ok(tokenAdmits > 0, 'the exploration reached token-bearing admits (not vacuous)')
  t.ok(paths > allInputs.length, 'the exploration covered many paths')
  // Every path terminates well within the bound: no cycles that keep the machine undecided.
  let undecided = 0
  const depthCheck = (state: State, depth: number): void => {
    if (state.name === 'done') return
    if (depth >= 4) {
      undecided++
      return
    }
    for (const input of allInputs) depthCheck(transition(state, input).state, depth + 1)
  }
  depthCheck(initialState, 0)
  t.equal(undecided, 0, 'every input sequence reaches done within 4 steps')
})

t.test('row 8: a pinned id admits no v1 connect, bearer or tokenless, and is never healed', async (t) => {
  const KEY_REQUIRED: Effect = { kind: 'reject', event: 'admission.key_required' }
  t.same(run([withBearer(ID, false, true)]).final, KEY_REQUIRED, 'a valid bearer alone is not enough on a pinned id')
  t.same(run([tokenless(false, true)]).final, KEY_REQUIRED, 'a tokenless claim on a pinned id is refused at once')
  t.same(run([tokenless(true, true)]).final, KEY_REQUIRED, 'even while a self-minted session is live')
  // A pin that commits between the steps: the guarded issue finds it.
  const raced = run([tokenless(), revoked(false), hasActive(false), { type: 'pinned' }])
  t.same(raced.effects.slice(0, 3), [REVOKE, HAS_ACTIVE, ISSUE])
  t.same(raced.final, KEY_REQUIRED, 'the guarded issue refuses, no token is minted')
  t.equal(raced.state.name, 'done')
})
