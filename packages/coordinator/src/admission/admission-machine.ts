/**
 * The admission decision for one v1 hello, as a pure state machine. The driver (admit.ts) feeds it
 * the facts it asks for and carries out its effects; it never sees sockets or the database.
 *
 * | # | situation                                                    | store steps               | auth_state             | wire                         | log event                        |
 * |---|--------------------------------------------------------------|---------------------------|------------------------|------------------------------|----------------------------------|
 * | 1 | bearer validated at upgrade, bound to the hello's id          | none                      | `bearer_validated`     | ack, no token                | `admission.bearer_validated`     |
 * | 2 | bearer validated at upgrade, bound to another id              | none                      | —                      | close 4005                   | `admission.binding_mismatch`     |
 * | 3 | tokenless, no active row for the id                           | revokeUnused, hasActive, issue | `self_minted`     | ack with new token           | `admission.minted`               |
 * | 4 | tokenless, active row self-minted and never used, no live     | revokeUnused, issue       | `self_minted`          | ack with new token           | `admission.self_heal`            |
 * |   | session holds it                                             |                           |                        |                              |                                  |
 * | 5 | tokenless, active row already used, or operator-issued        | revokeUnused, hasActive   | —                      | close 4005                   | `admission.tofu_reject`          |
 * | 6 | tokenless, issue refused by the unique index: a lost race, or | issue                     | `bearerless_duplicate` | ack, no token (the Registry  | `admission.duplicate_quarantined`|
 * |   | a live self-minted session already holds the unproven row     |                           |                        | refuses it if a session is live: close 4005) |                   |
 * | 7 | any store error on any step                                  | —                         | —                      | close 4005                   | `admission.store_error`          |
 * | 8 | the id has a pinned identity key (identity v2), bearer or    | none; or the guarded step | —                      | close 4005                   | `admission.key_required`         |
 * |   | not; or a pin commits while a tokenless claim runs           | finds it                  |                        |                              |                                  |
 *
 * Why row 8: a v1 connect never proves the key, so on a pinned id a bearer alone may be stolen
 * and a tokenless claim is a capture attempt; neither is admitted, and a pinned id is never
 * self-healed. The pin is read with the bearer (one statement, tokens/token-store.ts) or under
 * the lock, and revokeUnused and issue re-check it inside their own statements, so a pin that
 * commits between two steps still wins. v2 connects are decided by key-admission.ts.
 *
 * Why row 4 asks about a live session: self-heal exists for old binaries that drop the token we
 * mint, so their next tokenless connect must not be locked out. But while the session that
 * received the unproven token is still connected, a tokenless claim on the same id is a racer
 * or an attacker, and revoking the holder's token would hand the identity to whoever came
 * second. Such a claim goes straight to issue, where the unique index makes it a duplicate.
 */

import type { AuthState } from '@poolcoord/protocol'

export type { AuthState }

export type AdmissionEvent =
  | 'admission.bearer_validated'
  | 'admission.binding_mismatch'
  | 'admission.minted'
  | 'admission.self_heal'
  | 'admission.tofu_reject'
  | 'admission.duplicate_quarantined'
  | 'admission.store_error'
  | 'admission.key_required'

export type State = { name: 'start' } | { name: 'revoking_unused' } | { name: 'checking_active' } | { name: 'issuing'; healing: boolean } | { name: 'done' }

export type Input =
  | {
      type: 'hello'
      helloProviderId: string
      /** The id the upgrade's bearer is bound to; null for a tokenless connect. */
      bearerProviderId: string | null
      /** A live session for this id is self-minted, i.e. holds the id's unproven token. */
      liveSelfMinted: boolean
      /** The id has a pinned identity key (row 8). */
      pinned: boolean
    }
  | { type: 'revoked_unused'; revoked: boolean }
  | { type: 'has_active'; active: boolean }
  | { type: 'issued' }
  | { type: 'issue_conflict' }
  | { type: 'store_error' }
  /** A guarded store step found a pinned key (row 8). */
  | { type: 'pinned' }

export type Effect =
  | { kind: 'revoke_unused' }
  | { kind: 'has_active' }
  | { kind: 'issue' }
  | { kind: 'admit'; authState: AuthState; withToken: boolean; event: AdmissionEvent }
  | { kind: 'reject'; event: AdmissionEvent }

export interface Step {
  state: State
  effect: Effect
}

export const initialState: State = { name: 'start' }

export function transition(state: State, input: Input): Step {
  if (input.type === 'store_error') return reject('admission.store_error')
  if (input.type === 'pinned') return reject('admission.key_required')
  switch (state.name) {
    case 'start':
      if (input.type !== 'hello') break
      if (input.pinned) return reject('admission.key_required')
      if (input.bearerProviderId !== null) {
        return input.bearerProviderId === input.helloProviderId
          ? admit('bearer_validated', false, 'admission.bearer_validated')
          : reject('admission.binding_mismatch')
      }
      return input.liveSelfMinted
        ? { state: { name: 'issuing', healing: false }, effect: { kind: 'issue' } }
        : { state: { name: 'revoking_unused' }, effect: { kind: 'revoke_unused' } }
    case 'revoking_unused':
      if (input.type !== 'revoked_unused') break
      return input.revoked
        ? { state: { name: 'issuing', healing: true }, effect: { kind: 'issue' } }
        : { state: { name: 'checking_active' }, effect: { kind: 'has_active' } }
    case 'checking_active':
      if (input.type !== 'has_active') break
      return input.active ? reject('admission.tofu_reject') : { state: { name: 'issuing', healing: false }, effect: { kind: 'issue' } }
    case 'issuing':
      if (input.type === 'issued') {
        return admit('self_minted', true, state.healing ? 'admission.self_heal' : 'admission.minted')
      }
      if (input.type === 'issue_conflict') {
        return admit('bearerless_duplicate', false, 'admission.duplicate_quarantined')
      }
      break
    case 'done':
      break
  }
  // An input the current state does not expect is a bug in the driver: fail closed.
  return reject('admission.store_error')
}

function admit(authState: AuthState, withToken: boolean, event: AdmissionEvent): Step {
  return { state: { name: 'done' }, effect: { kind: 'admit', authState, withToken, event } }
}

function reject(event: AdmissionEvent): Step {
  return { state: { name: 'done' }, effect: { kind: 'reject', event } }
}
