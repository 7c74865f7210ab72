import { randomUUID } from 'node:crypto'
import type { AppContext } from '../app-context.js'
import type { SessionRef } from '../cluster/lease-value.js'
import type { ProviderLink } from '../pool/provider-link.js'
import { ActiveTokenExistsError, IdentityPinnedError } from '../errors.js'
import type { AdmissionOutcome } from './admission-outcome.js'
import type { ProviderSession } from '../pool/provider-session.js'
import type { Hello } from '../pool/provider-report.js'
import type { IssuedToken, ValidatedToken } from '../tokens/token-store.js'
import type { BucketTake } from '../limits/rate-bucket-store.js'
import { initialState, transition, type AdmissionEvent, type Effect, type Input } from './admission-machine.js'
import { decideKeyAdmission, type KeyAdmissionEvent } from './key-admission.js'
import { keyFingerprint, type IdentityIntent } from '@poolcoord/protocol'

export interface AdmitRequest {
  hello: Hello
  /**
   * What the upgrade's bearer validated as; null for a tokenless connect. `writeEpoch`: this node's
   * IdentityStore.writeEpoch just before that validation (see there).
   */
  bearer: (ValidatedToken & { writeEpoch: number }) | null
  /** Identity v2: the intent and keys of an auth_init whose proof has been verified; null for a v1 hello. */
  key: { intent: IdentityIntent; key: string; nextKey: string | null } | null
  peer: string
  /** What the mint limit charged this credential-less hello (given back if it turns out a self-heal); empty otherwise. */
  mintCharged?: readonly BucketTake[]
  link: ProviderLink
  /** False once the socket has gone away; checked before the session enters the pool. */
  isOpen: () => boolean
}

export type AdmitResult =
  | {
      ok: true
      session: ProviderSession
      token: string | null
      displaced: ProviderLink | null
      /** Cluster mode: the lease this session holds, to release on close; null on one node. */
      lease: SessionRef | null
      /** Gives back the session's place in its address's count (limits/prefix-sessions.ts); call on close. */
      releaseCount: () => void
    }
  | { ok: false; outcome: AdmissionOutcome }

/** A token minted during admission; `renewedFrom` names the presented token a renewal put in grace. */
type Minted = IssuedToken & { renewedFrom?: string }

/** What was decided under the locks, before the session enters this node's pool. */
type Decided =
  | {
      kind: 'admit'
      event: AdmissionEvent | KeyAdmissionEvent
      identity: ProviderSession['identity']
      authState: ProviderSession['authState']
      assignedId: string
      lease: SessionRef | null
      pending: boolean
      prevIsOurs: boolean
    }
  | { kind: 'fail'; outcome: AdmissionOutcome; event?: AdmissionOutcome; reason?: string }

/** The credential decision, before the cluster's lease claim. */
type Credential =
  | Extract<Decided, { kind: 'fail' }>
  | { kind: 'ok'; event: AdmissionEvent | KeyAdmissionEvent; authState: ProviderSession['authState']; identity: ProviderSession['identity'] }

/**
 * Drives the admission machine for one hello and puts the outcome into the Registry. Everything
 * from the first store step to registration runs under the provider_id's lock, so the machine's
 * view of the live session cannot change underneath it. A token minted for a connection that
 * then does not enter the pool is revoked at once: nobody received it.
 *
 * Cluster mode (specs/cluster.md §7, §12) adds, in this order:
 * - a fenced node admits nothing (4005);
 * - a tokenless hello runs its token-store steps *and* its lease claim under a PostgreSQL advisory
 *   transaction lock on the id (db/provider-lock.ts), so that a mint race spread over several
 *   nodes is decided exactly as on one; "a live self-minted holder" is read from the id's lease;
 * - the lease claim (the cross-node form of Registry.register's rule) comes before the session
 *   enters the local pool. Refused: 4005; lost three compare-and-sets: 4429; NATS unreachable:
 *   4005. A claim in handover enters the pool not routable (`leasePending`) until the old holder
 *   let go.
 */
export async function admit(ctx: AppContext, req: AdmitRequest): Promise<AdmitResult> {
  const { hello } = req
  const locked = await ctx.admissionLock.run(hello.providerId, () => decide())
  if (locked.ok) return locked.value
  ctx.log.warn({ event: 'admission.busy', provider_id: hello.providerId, peer: req.peer }, 'too many hellos queued for one provider_id')
  ctx.metrics.admission('admission.busy')
  return { ok: false, outcome: 'admission.busy' }

  async function decide(): Promise<AdmitResult> {
    const base = { provider_id: hello.providerId, peer: req.peer }
    // A socket that left while queued gets no store work at all: a flood of connect, hello,
    // close cannot make the store (or a victim's waiting hello) pay for it.
    if (!req.isOpen()) return abandoned(null, null)
    const cluster = ctx.cluster
    if (cluster !== null && !cluster.isLive()) return fail({ kind: 'fail', outcome: 'admission.cluster_unavailable', reason: 'fenced' }, null, null)
    let issued: Minted | null = null
    let lease: SessionRef | null = null
    let d: Decided
    try {
      const shared = () =>
        decideShared(
          (t) => (issued = t),
          (l) => (lease = l),
        )
      d = cluster !== null && req.bearer === null ? await cluster.admissionLock.run(hello.providerId, shared) : await shared()
    } catch (err) {
      // The cross-node lock could not be had, or was lost before its commit: whatever was
      // decided under it ran unserialised and is undone.
      ctx.log.error({ err, ...base }, 'admission lock failed; failing closed')
      return fail({ kind: 'fail', outcome: 'admission.store_error', event: 'admission.store_error' }, issued, lease)
    }
    if (d.kind === 'fail') return fail(d, issued, lease)
    if (!req.isOpen()) return abandoned(issued, lease)
    if (cluster !== null && (!cluster.isLive() || (lease !== null && (lease as SessionRef).incarnation !== cluster.incarnation))) {
      // Fenced while claiming: the claim belongs to an incarnation that has ended.
      return fail({ kind: 'fail', outcome: 'admission.cluster_unavailable', reason: 'fenced' }, issued, lease)
    }

    const now = ctx.clock.now()
    const session: ProviderSession = {
      providerId: hello.providerId,
      assignedId: d.assignedId,
      authState: d.authState,
      tokenPrefix: (issued as IssuedToken | null)?.tokenPrefix ?? req.bearer?.tokenPrefix ?? null,
      identity: d.identity,
      hostname: hello.hostname,
      binaryVersion: hello.binaryVersion,
      modelId: hello.modelId,
      models: hello.models,
      maxConcurrency: hello.maxConcurrency,
      maxContextTokens: hello.maxContextTokens,
      throughputTps: hello.throughputTps,
      status: 'ready',
      slotsFree: hello.maxConcurrency,
      slotsTotal: hello.maxConcurrency,
      inFlight: 0,
      consecutiveFailures: 0,
      cooldownUntil: 0,
      drainRequested: false,
      cordoned: ctx.cordons.has(hello.providerId),
      ...(cluster === null ? {} : { nodeId: cluster.nodeId, leasePending: d.pending }),
      connectedAt: now,
      lastHeartbeatAt: null,
      lastInboundAt: now,
    }
    if (cluster !== null && lease !== null && cluster.keeper.displacedBeforeRegistration(hello.providerId, d.assignedId)) {
      // A newer claim named this one as the session to replace before it entered the pool.
      return fail({ kind: 'fail', outcome: 'admission.registration_refused', reason: 'replaced' }, issued, lease)
    }
    // Counted and registered in one synchronous step, so concurrent admissions cannot overshoot.
    const releaseCount = ctx.prefixSessions.reserve(req.peer, session.authState, ctx.registry.get(hello.providerId) !== undefined)
    if (releaseCount === null) return fail({ kind: 'fail', outcome: 'admission.prefix_full', reason: session.authState }, issued, lease)
    const reg = ctx.registry.register(session, req.link)
    if (!reg.registered) {
      releaseCount()
      ctx.log.info({ event: d.event, ...base, auth_state: d.authState, registered: false }, 'provider admission decided')
      return fail({ kind: 'fail', outcome: 'admission.registration_refused', reason: reg.reason }, issued, lease)
    }
    // The session this node held for the id, if any, left the pool just now: a handover that
    // names it can be confirmed at once instead of on the lease watch.
    if (cluster !== null && d.prevIsOurs) cluster.keeper.confirmOwnHandover(hello.providerId)
    const token = issued as IssuedToken | null
    ctx.log.info(
      {
        event: d.event,
        ...base,
        assigned_id: session.assignedId,
        auth_state: session.authState,
        token_prefix: session.tokenPrefix,
        displaced_assigned_id: reg.displaced?.session.assignedId,
        ...(cluster === null ? {} : { lease: d.pending ? 'handover' : 'active' }),
      },
      'provider admitted',
    )
    ctx.metrics.admission(d.event)
    if (d.event === 'admission.self_heal' && req.mintCharged !== undefined && req.mintCharged.length > 0) {
      ctx.mintLimiter.chargeHeal(hello.providerId, req.mintCharged, now).catch((err: unknown) => {
        ctx.log.warn({ err, ...base }, 'could not move a self-heal to its own bucket; the mint charge stands')
      })
    }
    return { ok: true, session, token: token?.token ?? null, displaced: reg.displaced?.handle ?? null, lease, releaseCount }
  }

  /** The credential steps and, in cluster mode, the lease claim: what must be serialised across nodes. */
  async function decideShared(onIssued: (t: Minted) => void, onLease: (l: SessionRef) => void): Promise<Decided> {
    const cluster = ctx.cluster
    const cred = req.key === null ? await decideV1(onIssued) : await decideV2(req.key, onIssued)
    if (cred.kind === 'fail') return cred
    const effect = { event: cred.event, authState: cred.authState }
    const identity = cred.identity
    const assignedId = randomUUID()
    if (cluster === null)
      return { kind: 'admit', event: effect.event, authState: effect.authState, identity, assignedId, lease: null, pending: false, prevIsOurs: false }
    if (!req.isOpen()) return { kind: 'fail', outcome: 'admission.abandoned' }
    const ref = cluster.ref({ assignedId })
    let r
    try {
      r = await cluster.keeper.claim(hello.providerId, { ...ref, auth_state: effect.authState, status: 'ready' })
    } catch (err) {
      ctx.log.error({ err, provider_id: hello.providerId }, 'session lease claim failed; failing closed')
      return { kind: 'fail', outcome: 'admission.cluster_unavailable', reason: 'nats' }
    }
    if (!r.ok) return { kind: 'fail', outcome: r.reason === 'busy' ? 'admission.busy' : 'admission.registration_refused', reason: r.reason }
    onLease(ref)
    const prev = r.lease.prev
    const prevIsOurs = prev !== undefined && prev.node_id === ref.node_id && prev.incarnation === ref.incarnation
    return {
      kind: 'admit',
      event: effect.event,
      authState: effect.authState,
      identity,
      assignedId,
      lease: ref,
      pending: r.lease.state === 'handover',
      prevIsOurs,
    }
  }

  /** Whether a live session of the id holds its unproven self-minted token: this node's Registry, or in cluster mode the id's lease. */
  async function liveSelfMinted(): Promise<boolean | null> {
    if (ctx.cluster === null) return ctx.registry.get(hello.providerId)?.authState === 'self_minted'
    try {
      return await ctx.cluster.keeper.liveSelfMinted(hello.providerId)
    } catch (err) {
      ctx.log.error({ err, provider_id: hello.providerId }, 'could not read the session lease; failing closed')
      return null
    }
  }

  /** A v1 hello: the admission machine (admission-machine.ts). */
  async function decideV1(onIssued: (t: IssuedToken) => void): Promise<Credential> {
    // The live session is read first, at once: what the machine sees of it is the pool at the
    // moment this hello got the id's lock, not after a store round trip.
    const live = req.bearer === null ? await liveSelfMinted() : false
    if (live === null) return { kind: 'fail', outcome: 'admission.cluster_unavailable', reason: 'nats' }
    let pinned: boolean
    if (req.bearer !== null) {
      pinned = req.bearer.pin !== null
      // The pin was read at the upgrade. If one may have committed since (here, or on another
      // node), check again under this lock: a v1 bearer must never get in on a freshly pinned id.
      if (!pinned && (ctx.cluster !== null || ctx.identities.writeEpoch !== req.bearer.writeEpoch)) {
        try {
          pinned = !(await ctx.identities.stillUnpinned(req.bearer.tokenId, hello.providerId))
        } catch (err) {
          ctx.log.error({ err, provider_id: hello.providerId }, 'identity key check failed; failing closed')
          return { kind: 'fail', outcome: 'admission.store_error', event: 'admission.store_error' }
        }
      }
    } else {
      try {
        pinned = (await ctx.identities.get(hello.providerId)) !== null
      } catch (err) {
        ctx.log.error({ err, provider_id: hello.providerId }, 'identity key lookup failed; failing closed')
        return { kind: 'fail', outcome: 'admission.store_error', event: 'admission.store_error' }
      }
    }
    let step = transition(initialState, {
      type: 'hello',
      helloProviderId: hello.providerId,
      bearerProviderId: req.bearer?.providerId ?? null,
      liveSelfMinted: live,
      pinned,
    })
    while (step.effect.kind !== 'admit' && step.effect.kind !== 'reject') {
      // Checked before every step, so that a claim which has already gone away cannot revoke
      // (self-heal) a token on its way out.
      if (!req.isOpen()) return { kind: 'fail', outcome: 'admission.abandoned' }
      const input = await perform(step.effect)
      if ('token' in input) onIssued(input.token)
      step = transition(step.state, input)
    }
    const effect = step.effect
    if (effect.kind === 'reject') return { kind: 'fail', outcome: effect.event, event: effect.event }
    return { kind: 'ok', event: effect.event, authState: effect.authState, identity: null }
  }

  /** A verified v2 proof: key-admission.ts decides, one guarded transaction carries it out. */
  async function decideV2(key: NonNullable<AdmitRequest['key']>, onIssued: (t: Minted) => void): Promise<Credential> {
    const id = hello.providerId
    const now = ctx.clock.now()
    const { tokenTtlMs, tokenGraceMs, previousKeyValidMs } = ctx.config.identity
    const storeFail = (err: unknown): Credential => {
      ctx.log.error({ err, provider_id: id }, 'identity store step failed; failing closed')
      return { kind: 'fail', outcome: 'admission.store_error', event: 'admission.store_error' }
    }
    // With a bearer, the pin was read by the upgrade's one validate-and-mark statement; the
    // store step re-checks it under this lock (identity-store.ts), so it is not read twice.
    let pin = req.bearer?.pin ?? null
    // Single node, and no identity write since the upgrade read the pin: it is still the pin.
    const pinUnchanged = req.bearer !== null && ctx.cluster === null && ctx.identities.writeEpoch === req.bearer.writeEpoch
    if (req.bearer === null) {
      try {
        pin = await ctx.identities.get(id)
      } catch (err) {
        return storeFail(err)
      }
    }
    const needsLive = pin === null && key.intent === 'enroll' && req.bearer === null
    const live = needsLive ? await liveSelfMinted() : false
    if (live === null) return { kind: 'fail', outcome: 'admission.cluster_unavailable', reason: 'nats' }
    const d = decideKeyAdmission({
      intent: key.intent,
      helloProviderId: id,
      key: key.key,
      nextKey: key.nextKey,
      bearer: req.bearer,
      pin,
      requireProviderTokens: ctx.live.get().requireProviderTokens,
      liveSelfMinted: live,
      now,
      tokenTtlMs,
    })
    if (d.kind === 'reject') return { kind: 'fail', outcome: d.event, event: d.event }
    if (!req.isOpen()) return { kind: 'fail', outcome: 'admission.abandoned' }
    if (d.kind === 'recover') {
      // Charged only once the proof verified: a budget per id that anyone could spend with junk
      // proofs would let a stranger lock the key holder out of recovery (specs/admission.md §7.2).
      const limited = await recoveryLimited()
      if (limited !== null) return limited
      if (!req.isOpen()) return { kind: 'fail', outcome: 'admission.abandoned' }
    }
    let written
    try {
      const base = { providerId: id, name: hello.hostname, key: key.key, now, ttlMs: tokenTtlMs }
      switch (d.kind) {
        case 'enroll_new':
          written = await ctx.identities.enrollNew({ ...base, healUnused: d.healUnused })
          break
        case 'pin_in_place':
          written = await ctx.identities.pinInPlace({ ...base, tokenId: (req.bearer as ValidatedToken).tokenId })
          break
        case 'recover':
          written = await ctx.identities.recover(base)
          break
        case 'connect':
          written = await ctx.identities.connect({
            ...base,
            tokenId: (req.bearer as ValidatedToken).tokenId,
            renewal: d.renewal,
            graceMs: tokenGraceMs,
            rotation: d.rotation === null ? null : { ...d.rotation, previousValidMs: previousKeyValidMs },
            unchangedGeneration: pinUnchanged && pin !== null ? pin.generation : null,
          })
          break
      }
    } catch (err) {
      return storeFail(err)
    }
    if (!written.ok) {
      const outcome = written.why === 'proven_token' ? 'admission.tofu_reject' : 'admission.identity_conflict'
      return { kind: 'fail', outcome, event: outcome, reason: written.why }
    }
    const token = 'token' in written ? (written.token as IssuedToken | null) : null
    // A renewal's undo must also take the presented token out of the grace it was given.
    if (token !== null) onIssued(d.kind === 'connect' && d.renewal === 'supersede' ? { ...token, renewedFrom: (req.bearer as ValidatedToken).tokenId } : token)
    const generation = 'generation' in written ? (written.generation as number) : (pin?.generation ?? 1)
    const current = d.kind === 'connect' && d.rotation !== null ? d.rotation.nextKey : (pin?.publicKey ?? key.key)
    return { kind: 'ok', event: d.event, authState: 'key_proven', identity: { generation, keyFingerprint: keyFingerprint(current) } }
  }

  async function recoveryLimited(): Promise<Credential | null> {
    try {
      const v = await ctx.mintLimiter.takeRecovery(hello.providerId, ctx.clock.now())
      if (v.ok) return null
      return {
        kind: 'fail',
        outcome: 'admission.mint_rate_limited',
        event: 'admission.mint_rate_limited',
        reason: `${v.bucket}; retry in ${Math.ceil(v.retryAfterMs / 1000)} s`,
      }
    } catch (err) {
      ctx.log.error({ err, provider_id: hello.providerId }, 'recovery rate limit could not be checked; failing closed')
      return { kind: 'fail', outcome: 'admission.limiter_error', event: 'admission.limiter_error' }
    }
  }

  async function fail(d: Extract<Decided, { kind: 'fail' }>, issued: Minted | null, lease: SessionRef | null): Promise<AdmitResult> {
    if (d.outcome === 'admission.abandoned') return abandoned(issued, lease)
    const base = { provider_id: hello.providerId, peer: req.peer }
    if (lease !== null) ctx.cluster?.keeper.release(hello.providerId, lease)
    await undoMint(issued, base)
    const level =
      d.outcome === 'admission.cluster_unavailable' || d.outcome === 'admission.store_error' || d.outcome === 'admission.limiter_error' ? 'error' : 'warn'
    const message = d.outcome === 'admission.registration_refused' ? 'provider session refused by the pool' : 'provider admission rejected'
    ctx.log[level]({ event: d.outcome, ...base, ...(d.reason === undefined ? {} : { reason: d.reason }) }, message)
    ctx.metrics.admission(d.outcome)
    return { ok: false, outcome: d.outcome }
  }

  async function abandoned(issued: Minted | null, lease: SessionRef | null): Promise<AdmitResult> {
    const base = { provider_id: hello.providerId, peer: req.peer }
    if (lease !== null) ctx.cluster?.keeper.release(hello.providerId, lease)
    await undoMint(issued, base)
    ctx.log.info({ event: 'admission.abandoned', ...base }, 'provider left during admission')
    ctx.metrics.admission('admission.abandoned')
    return { ok: false, outcome: 'admission.abandoned' }
  }

  async function perform(effect: Effect): Promise<Input | { type: 'issued'; token: IssuedToken }> {
    try {
      switch (effect.kind) {
        case 'revoke_unused':
          return { type: 'revoked_unused', revoked: await ctx.tokens.revokeUnused(hello.providerId) }
        case 'has_active':
          return { type: 'has_active', active: await ctx.tokens.hasActive(hello.providerId) }
        case 'issue':
          return { type: 'issued', token: await ctx.tokens.issue(hello.providerId, hello.hostname, 'self_minted') }
        default:
          return { type: 'store_error' }
      }
    } catch (err) {
      if (err instanceof ActiveTokenExistsError) return { type: 'issue_conflict' }
      if (err instanceof IdentityPinnedError) return { type: 'pinned' }
      ctx.log.error({ err, provider_id: hello.providerId, step: effect.kind }, 'token store step failed')
      return { type: 'store_error' }
    }
  }

  async function undoMint(issued: Minted | null, base: Record<string, unknown>): Promise<void> {
    if (issued === null) return
    try {
      if (issued.renewedFrom === undefined) await ctx.tokens.revoke(issued.token)
      else await ctx.identities.undoRenewal({ providerId: hello.providerId, tokenId: issued.renewedFrom, successor: issued.token })
      ctx.log.info({ event: 'admission.mint_revoked', token_prefix: issued.tokenPrefix, ...base }, 'revoked a token nobody received')
    } catch (err) {
      // The cleartext was never sent, so the row is unusable; self-heal or prune-tokens clears it.
      ctx.log.error({ err, token_prefix: issued.tokenPrefix, ...base }, 'could not revoke an undelivered token')
    }
  }
}
