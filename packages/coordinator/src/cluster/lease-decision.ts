/**
 * The rules of session leases (specs/cluster.md §7): who may take a provider_id's lease, and what
 * each node does when the lease changes under one of its sessions. Pure: the shell
 * (session-leases.ts) reads the lease and the liveness of the incarnations it names, then asks.
 *
 * Who may displace whom is not decided here: the single-node rule, decideRegistration, decides,
 * fed with the lease's auth_state and status as the existing session. This module adds only what
 * several nodes need on top: a dead owner holds nothing, and a replaced owner that may still be
 * routing must let go (or die) before its successor routes.
 *
 * The invariant: a session is routable only while the lease names it and says `active`, and every
 * lease write is a compare-and-set on the revision it was decided against.
 */
import { AUTH_STATES, type AuthState, type ProviderStatus } from '@poolcoord/protocol'
import { decideRegistration, type RegistrationDecision } from '../pool/eviction.js'
import { sameIncarnation, sameSession, sessionRef, type IncarnationRef, type SessionLease, type SessionRef } from './lease-value.js'

/**
 * The lease as the shell found it. `ownerLive` and `prevLive`: does pc_nodes hold the incarnation
 * named by the owner, and by `prev` (false when there is no `prev`)?
 */
export type CurrentLease = { kind: 'none' } | { kind: 'unreadable' } | { kind: 'lease'; lease: SessionLease; ownerLive: boolean; prevLive: boolean }

/** decideRegistration's refusals, and a lease value this version cannot read. The shell adds `busy` (CAS lost 3 times). */
export type ClaimRefusal = Extract<RegistrationDecision, { action: 'refuse' }>['reason'] | 'lease_unreadable'

export type LeaseDecision =
  /** No lease: write one, `active`. */
  | { action: 'create' }
  /** The owner's incarnation is dead, so it routes nothing: write over it, `active`, or `handover` when an earlier `prev` may still route. */
  | { action: 'take_over_dead'; prev: SessionRef | null }
  /** decideRegistration lets the newcomer replace a live owner: write `handover`, naming the session that must let go first. */
  | { action: 'replace_with_handover'; prev: SessionRef }
  | { action: 'refuse'; reason: ClaimRefusal }

export type Claimant = SessionRef & { auth_state: AuthState; status: ProviderStatus }

export function decideClaim(current: CurrentLease, incoming: AuthState): LeaseDecision {
  // Never "free": a value we cannot read may name a live owner, and guessing would risk two routable sessions.
  if (current.kind === 'unreadable') return { action: 'refuse', reason: 'lease_unreadable' }
  const found = current.kind === 'lease' ? current : null
  // A dead incarnation closed its sockets when it fenced: to the rule, its lease holds no session.
  const existing = found?.ownerLive === true ? { authState: found.lease.auth_state, status: found.lease.status } : undefined
  const decision = decideRegistration(existing, incoming)
  if (decision.action === 'refuse') return decision
  if (found === null) return { action: 'create' }
  // In a handover the owner has not routed yet; the one that may be routing is its live `prev`.
  const stillRouting = found.lease.prev !== undefined && found.prevLive ? sessionRef(found.lease.prev) : null
  if (decision.action === 'register') return { action: 'take_over_dead', prev: stillRouting }
  // Otherwise the owner itself must let go. (A handover owner whose prev died could only route by
  // first writing `active`, which our compare-and-set would beat; naming it anyway costs one
  // confirmation and keeps this rule to one line.)
  return { action: 'replace_with_handover', prev: stillRouting ?? sessionRef(found.lease) }
}

/** The lease a granted claim writes. */
export function claimedLease(c: Claimant, d: Exclude<LeaseDecision, { action: 'refuse' }>): SessionLease {
  const lease: SessionLease = { v: 1, ...sessionRef(c), auth_state: c.auth_state, status: c.status, state: 'active' }
  const prev = d.action === 'create' ? null : d.prev
  return prev === null ? lease : { ...lease, state: 'handover', prev }
}

/** The same lease, routable: written by the old owner once it let go, or by the owner once `prev`'s incarnation is dead. */
export function activeLease(lease: SessionLease): SessionLease {
  const { prev: _prev, ...rest } = lease
  return { ...rest, state: 'active' }
}

/**
 * Where one of this node's sessions stands, given the lease for its provider_id (null: absent or
 * unreadable) and whether the lease's `prev` incarnation is live.
 * - `routable`: the lease names it and is active.
 * - `wait`: it is named, in handover, and `prev` may still route: not routable yet.
 * - `promote`: it is named, in handover, and `prev` is dead: write `active` by compare-and-set, then route.
 * - `displaced`: the lease names another session (or none): stop routing it, close it 4006.
 */
export type SessionVerdict = 'routable' | 'wait' | 'promote' | 'displaced'

export function sessionVerdict(lease: SessionLease | null, mine: SessionRef, prevLive: boolean): SessionVerdict {
  if (lease === null || !sameSession(lease, mine)) return 'displaced'
  if (lease.state === 'active') return 'routable'
  return prevLive ? 'wait' : 'promote'
}

/**
 * A handover addressed to this node incarnation (`prev` names it): it must stop routing `prev`
 * (close it 4006, when it still holds it locally) and then confirm by writing `active`. It confirms
 * even when it no longer holds that session (closed meanwhile, or a lease orphaned by a lost
 * reply): otherwise the newcomer would wait for this healthy node to die, that is forever.
 * Returns null when the lease asks nothing of this node.
 */
export function handoverDuty(lease: SessionLease | null, me: IncarnationRef, localAssignedId: string | undefined): { close: string | null } | null {
  if (lease === null || lease.prev === undefined || !sameIncarnation(lease.prev, me)) return null
  return { close: localAssignedId === lease.prev.assigned_id ? localAssignedId : null }
}

/**
 * A lease that names this incarnation but a session it does not hold (nor is claiming for): left
 * by a claim whose reply was lost, or by a release that had to keep a handover. The node deletes
 * it. `localAssignedId` must include claims in flight, or a node would delete its own fresh lease.
 */
export function isOrphan(lease: SessionLease | null, me: IncarnationRef, localAssignedId: string | undefined): boolean {
  return lease !== null && lease.state === 'active' && sameIncarnation(lease, me) && lease.assigned_id !== localAssignedId
}

/**
 * How a closing session gives its lease up. Active: delete it. In handover: its `prev` may still
 * be routing, and a deleted lease would let the next claim route at once; so the lease stays,
 * marked `unavailable` (a session that left may be replaced by any credential but a duplicate),
 * and the next claim still waits for `prev`.
 */
export function releaseStep(lease: SessionLease): { op: 'delete' } | { op: 'write'; lease: SessionLease } {
  return lease.state === 'active' ? { op: 'delete' } : { op: 'write', lease: { ...lease, status: 'unavailable' } }
}

/**
 * Whether a status change must be written to the lease: only when it changes what
 * decideRegistration would answer some newcomer (ready -> draining on a bearer lease does; ready
 * -> busy does not). Busy flips happen often; writing them would cost a KV write each.
 */
export function statusMatters(lease: Pick<SessionLease, 'auth_state' | 'status'>, next: ProviderStatus): boolean {
  const before = { authState: lease.auth_state, status: lease.status }
  const after = { authState: lease.auth_state, status: next }
  return AUTH_STATES.some((incoming) => JSON.stringify(decideRegistration(before, incoming)) !== JSON.stringify(decideRegistration(after, incoming)))
}
