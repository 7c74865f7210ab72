import { randomUUID } from 'node:crypto'
import type { AppContext } from '../app-context.js'
import type { ProviderLink } from '../pool/provider-link.js'
import { ActiveTokenExistsError } from '../errors.js'
import type { AdmissionOutcome } from './admission-outcome.js'
import type { ProviderSession } from '../pool/provider-session.js'
import type { Hello } from '../pool/provider-report.js'
import type { IssuedToken } from '../tokens/token-store.js'
import { initialState, transition, type Effect, type Input } from './admission-machine.js'

export interface AdmitRequest {
  hello: Hello
  /** The identity the upgrade's bearer validated as; null for a tokenless connect. */
  bearer: { providerId: string; tokenPrefix: string } | null
  peer: string
  link: ProviderLink
  /** False once the socket has gone away; checked before the session enters the pool. */
  isOpen: () => boolean
}

export type AdmitResult =
  { ok: true; session: ProviderSession; token: string | null; displaced: ProviderLink | null } | { ok: false; outcome: AdmissionOutcome }

/**
 * Drives the admission machine for one hello and puts the outcome into the Registry. Everything
 * from the first store step to registration runs under the provider_id's lock, so the machine's
 * view of the live session cannot change underneath it. A token minted for a connection that
 * then does not enter the pool is revoked at once: nobody received it.
 */
export async function admit(ctx: AppContext, req: AdmitRequest): Promise<AdmitResult> {
  const { hello } = req
  const locked = await ctx.admissionLock.run(hello.providerId, () => decide())
  if (locked.ok) return locked.value
  ctx.log.warn({ event: 'admission.busy', provider_id: hello.providerId, peer: req.peer }, 'too many hellos queued for one provider_id')
  ctx.metrics.admission('admission.busy')
  return { ok: false, outcome: 'admission.busy' }

  async function decide(): Promise<AdmitResult> {
    // A socket that left while queued gets no store work at all: a flood of connect, hello,
    // close cannot make the store (or a victim's waiting hello) pay for it.
    if (!req.isOpen()) return abandoned(null)
    const live = ctx.registry.get(hello.providerId)
    let step = transition(initialState, {
      type: 'hello',
      helloProviderId: hello.providerId,
      bearerProviderId: req.bearer?.providerId ?? null,
      liveSelfMinted: live?.authState === 'self_minted',
    })
    let issued: IssuedToken | null = null
    while (step.effect.kind !== 'admit' && step.effect.kind !== 'reject') {
      // Checked before every step, so that a claim which has already gone away cannot revoke
      // (self-heal) a token on its way out.
      if (!req.isOpen()) return abandoned(issued)
      const input = await perform(step.effect)
      if ('token' in input) issued = input.token
      step = transition(step.state, input)
    }
    const effect = step.effect
    const base = { provider_id: hello.providerId, peer: req.peer }

    if (effect.kind === 'reject') {
      ctx.log.warn({ event: effect.event, ...base }, 'provider admission rejected')
      ctx.metrics.admission(effect.event)
      return { ok: false, outcome: effect.event }
    }

    if (!req.isOpen()) return abandoned(issued)

    const now = ctx.clock.now()
    const session: ProviderSession = {
      providerId: hello.providerId,
      assignedId: randomUUID(),
      authState: effect.authState,
      tokenPrefix: issued?.tokenPrefix ?? req.bearer?.tokenPrefix ?? null,
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
      connectedAt: now,
      lastHeartbeatAt: null,
      lastInboundAt: now,
    }
    const reg = ctx.registry.register(session, req.link)
    if (!reg.registered) {
      ctx.log.info({ event: effect.event, ...base, auth_state: effect.authState, registered: false }, 'provider admission decided')
      await undoMint(issued, base)
      ctx.log.warn(
        { event: 'admission.registration_refused', reason: reg.reason, auth_state: effect.authState, ...base },
        'provider session refused by the pool',
      )
      ctx.metrics.admission('admission.registration_refused')
      return { ok: false, outcome: 'admission.registration_refused' }
    }
    ctx.log.info(
      {
        event: effect.event,
        ...base,
        assigned_id: session.assignedId,
        auth_state: session.authState,
        token_prefix: session.tokenPrefix,
        displaced_assigned_id: reg.displaced?.session.assignedId,
      },
      'provider admitted',
    )
    ctx.metrics.admission(effect.event)
    return { ok: true, session, token: issued?.token ?? null, displaced: reg.displaced?.handle ?? null }
  }

  async function abandoned(issued: IssuedToken | null): Promise<AdmitResult> {
    const base = { provider_id: hello.providerId, peer: req.peer }
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
      ctx.log.error({ err, provider_id: hello.providerId, step: effect.kind }, 'token store step failed')
      return { type: 'store_error' }
    }
  }

  async function undoMint(issued: IssuedToken | null, base: Record<string, unknown>): Promise<void> {
    if (issued === null) return
    try {
      await ctx.tokens.revoke(issued.token)
      ctx.log.info({ event: 'admission.mint_revoked', token_prefix: issued.tokenPrefix, ...base }, 'revoked a token nobody received')
    } catch (err) {
      // The cleartext was never sent, so the row is unusable; self-heal or prune-tokens clears it.
      ctx.log.error({ err, token_prefix: issued.tokenPrefix, ...base }, 'could not revoke an undelivered token')
    }
  }
}
