/**
 * Identity v2: what a verified key proof entitles a connection to (specs/admission.md §6). Pure:
 * the shell (admit.ts) has already verified the signature over the challenge, read the id's pin
 * under the provider_id's lock, and carries out the decision as one guarded transaction
 * (tokens/identity-store.ts), so a decision on a stale read writes nothing.
 *
 * | intent  | bearer | id has no pinned key                              | id has a pinned key (not revoked)                                  |
 * |---------|--------|---------------------------------------------------|--------------------------------------------------------------------|
 * | enroll  | none   | tokens required: 4005. A live self-minted session | 4005 `key_pinned`: a key holder without a token recovers           |
 * |         |        | holds the id: 4005. Else heal a never-used token, |                                                                    |
 * |         |        | then pin + mint in one transaction; a proven      |                                                                    |
 * |         |        | token: 4005 `tofu_reject`                         |                                                                    |
 * | enroll  | valid  | pin in place; the bearer gains its expiry          | same key: as `connect`; another key: 4005 `key_mismatch`          |
 * | connect | valid  | 4005 `key_not_pinned` (the agent enrolls instead)  | current key, or the previous one in its 7 days: `key_proven`      |
 * | connect | none   | 4005 `bearer_required`                             | 4005 `bearer_required`: without a token, `recover`                |
 * | recover | any    | 4005 `key_not_pinned`                              | current key: revoke every token, mint one: `key_proven`           |
 * | rotate  | valid  | 4005 `key_not_pinned`                              | current key: generation compare-and-set to the next key; previous |
 * |         |        |                                                    | key with next = current: the rotation already happened, connect   |
 * | rotate  | none   | 4005 `bearer_required`                             | 4005 `bearer_required`                                            |
 * | any     | any    | —                                                  | revoked (revoke-identity): 4005 `identity_revoked`                |
 *
 * A bearer bound to another id is 4005 `binding_mismatch` before any of this. Whenever a bearer
 * is presented on a pinned id, it is renewed (`renewal`): past half its TTL (or with no expiry
 * yet) it gets a successor and a grace period; presented while in grace, its never-received
 * successor is replaced.
 *
 * Why the previous key may only `connect`: rotation is routine hygiene, so an agent that missed
 * the rotation's answer must still get in; but a key retired because it leaked must not be able
 * to mint tokens (`recover`) or choose the next key (`rotate`). For a leak, revoke-identity.
 * Why `rotate` needs the bearer too: a stolen key alone could otherwise lock its owner out for
 * good by rotating to the thief's key; with `recover` the owner can still take the id back.
 */
import type { IdentityIntent } from '@poolcoord/protocol'
import type { PinnedKey, TokenRenewal } from '../tokens/identity-store.js'

export type KeyAdmissionEvent =
  | 'admission.key_enrolled'
  | 'admission.key_pinned_in_place'
  | 'admission.key_proven'
  | 'admission.key_recovered'
  | 'admission.key_rotated'
  | 'admission.key_pinned'
  | 'admission.key_mismatch'
  | 'admission.key_not_pinned'
  | 'admission.bearer_required'
  | 'admission.identity_revoked'
  | 'admission.binding_mismatch'
  | 'admission.tokens_required'
  | 'admission.tofu_reject'
  | 'admission.duplicate_refused'

export interface KeyFacts {
  intent: IdentityIntent
  helloProviderId: string
  /** The key the verified proof was made with. */
  key: string
  nextKey: string | null
  /** The bearer validated at the upgrade, or null for a tokenless connect. */
  bearer: { providerId: string; inGrace: boolean; expiresAt: number | null } | null
  /** The id's pin as read under the lock, or null. */
  pin: PinnedKey | null
  requireProviderTokens: boolean
  /** A live session of this id holds its unproven self-minted token (admission-machine.ts row 4). */
  liveSelfMinted: boolean
  now: number
  tokenTtlMs: number
}

export type KeyDecision =
  | { kind: 'reject'; event: KeyAdmissionEvent }
  | { kind: 'enroll_new'; healUnused: boolean; event: 'admission.key_enrolled' }
  | { kind: 'pin_in_place'; event: 'admission.key_pinned_in_place' }
  | { kind: 'recover'; event: 'admission.key_recovered' }
  | {
      kind: 'connect'
      renewal: TokenRenewal
      rotation: { generation: number; nextKey: string } | null
      event: 'admission.key_proven' | 'admission.key_rotated'
    }

export function decideKeyAdmission(f: KeyFacts): KeyDecision {
  const { bearer, pin } = f
  if (bearer !== null && bearer.providerId !== f.helloProviderId) return reject('admission.binding_mismatch')
  if (pin !== null && pin.revoked) return reject('admission.identity_revoked')
  if (pin === null) {
    if (f.intent !== 'enroll') {
      return reject((f.intent === 'connect' || f.intent === 'rotate') && bearer === null ? 'admission.bearer_required' : 'admission.key_not_pinned')
    }
    if (bearer !== null) return { kind: 'pin_in_place', event: 'admission.key_pinned_in_place' }
    if (f.requireProviderTokens) return reject('admission.tokens_required')
    // v2 never produces quarantined duplicates: the unproven token's live holder keeps the id.
    if (f.liveSelfMinted) return reject('admission.duplicate_refused')
    return { kind: 'enroll_new', healUnused: true, event: 'admission.key_enrolled' }
  }
  const isCurrent = f.key === pin.publicKey
  const isPrevious = pin.previousKey !== null && f.key === pin.previousKey && pin.previousValidUntil !== null && pin.previousValidUntil > f.now
  switch (f.intent) {
    case 'recover':
      return isCurrent ? { kind: 'recover', event: 'admission.key_recovered' } : reject('admission.key_mismatch')
    case 'enroll':
      if (!isCurrent) return reject('admission.key_mismatch')
      return bearer === null ? reject('admission.key_pinned') : connect(bearer, null, f)
    case 'connect':
      if (bearer === null) return reject('admission.bearer_required')
      return isCurrent || isPrevious ? connect(bearer, null, f) : reject('admission.key_mismatch')
    case 'rotate':
      if (bearer === null) return reject('admission.bearer_required')
      if (isCurrent && f.nextKey !== null) return connect(bearer, { generation: pin.generation, nextKey: f.nextKey }, f)
      // The agent announced this rotation before and missed the answer: it already holds.
      if (isPrevious && f.nextKey === pin.publicKey) return connect(bearer, null, f)
      return reject('admission.key_mismatch')
  }
}

/** How a presented bearer of a pinned id is renewed (specs/admission.md §6.4). */
export function tokenRenewal(bearer: { inGrace: boolean; expiresAt: number | null }, now: number, ttlMs: number): TokenRenewal {
  if (bearer.inGrace) return 'replace_successor'
  if (bearer.expiresAt === null || bearer.expiresAt - now < ttlMs / 2) return 'supersede'
  return 'keep'
}

function connect(bearer: NonNullable<KeyFacts['bearer']>, rotation: { generation: number; nextKey: string } | null, f: KeyFacts): KeyDecision {
  return {
    kind: 'connect',
    renewal: tokenRenewal(bearer, f.now, f.tokenTtlMs),
    rotation,
    event: rotation === null ? 'admission.key_proven' : 'admission.key_rotated',
  }
}

function reject(event: KeyAdmissionEvent): KeyDecision {
  return { kind: 'reject', event }
}
