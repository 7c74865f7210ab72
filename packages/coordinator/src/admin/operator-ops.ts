import {
  PROVIDER_ID_RE,
  TOKEN_PREFIX_RE,
  keyFingerprint,
  type AdminIdentity,
  type AdminToken,
  type AuditResponse,
  type CordonResponse,
  type CordonRow,
  type IdentityActionResponse,
  type IssuedTokenResponse,
  type PruneResponse,
  type RevokeResponse,
} from '@poolcoord/protocol'
import { MAX_CORDON_REASON } from '../cordons/cordon-store.js'
import type { Cordons } from '../cordons/cordons.js'
import { InvalidProviderIdError, TokenPrefixInvalidError, UsageError } from '../errors.js'
import type { IdentityInfo, IdentityStore } from '../tokens/identity-store.js'
import type { TokenInfo, TokenStore } from '../tokens/token-store.js'
import { auditFlip, type PoolzSession } from './audit.js'

/** Unproven tokens younger than this may belong to providers still starting: never pruned. */
export const PRUNE_MIN_S = 24 * 3600
/** Ages and durations an operator may give: up to ten years, well inside PostgreSQL's intervals. */
export const MAX_AGE_S = 10 * 365 * 24 * 3600
const CONTROL_RE = /[\u0000-\u001f\u007f]/

/** The live pool, when the operations run inside a coordinator; null for the CLI on the database. */
export interface LivePool {
  sessions(): PoolzSession[]
  /**
   * Closes the live session of providerId now (4007), wherever it is (cluster mode may have to
   * ask another node); false when it has none.
   */
  kick(providerId: string): boolean | Promise<boolean>
  /** Closes the provider's session, wherever it is, only if the token with this prefix admitted it. */
  kickIfToken(providerId: string, tokenPrefix: string): boolean | Promise<boolean>
  setCordoned(providerId: string, cordoned: boolean): boolean
}

/**
 * Every token, identity and cordon operation an operator can ask for, in one place: the admin API runs
 * them inside the coordinator (with the live pool), and coordinator-cli runs the same code on
 * the database when no coordinator answers. Inputs are checked here, before any store call.
 */
export class OperatorOps {
  constructor(
    private readonly tokens: TokenStore,
    private readonly cordons: Cordons,
    private readonly identities: IdentityStore,
    private readonly live: LivePool | null,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async listTokens(activeOnly: boolean): Promise<AdminToken[]> {
    return (await this.tokens.list({ activeOnly })).map(adminToken)
  }

  async issueToken(providerId: string, name: string): Promise<IssuedTokenResponse> {
    checkProviderId(providerId)
    if (CONTROL_RE.test(name)) throw new UsageError('name must have no control characters')
    const label = name === '' ? providerId : name.slice(0, 253)
    const issued = await this.tokens.issue(providerId, label, 'operator_issued')
    return { token: issued.token, token_prefix: issued.tokenPrefix, provider_id: issued.providerId, name: label, origin: 'operator_issued' }
  }

  /**
   * Revokes the one active token with this prefix and closes the session that token admitted, so
   * that a revocation bites at once rather than at the provider's next reconnect; with `kick`, it
   * closes the provider's live session whatever token admitted it. One call, authorised once.
   */
  async revokeToken(prefix: string, kick: boolean): Promise<RevokeResponse> {
    if (!TOKEN_PREFIX_RE.test(prefix)) throw new TokenPrefixInvalidError()
    const tk = await this.tokens.revokeByPrefix(prefix)
    // Without a coordinator there is no live session to close: false when a kick was asked for, null otherwise.
    if (this.live === null) return { ...adminToken(tk), kicked: kick ? false : null }
    const kicked = kick ? await this.live.kick(tk.providerId) : await this.live.kickIfToken(tk.providerId, tk.tokenPrefix)
    return { ...adminToken(tk), kicked }
  }

  async pruneTokens(olderThanS: number, apply: boolean): Promise<PruneResponse> {
    if (!Number.isFinite(olderThanS) || olderThanS > MAX_AGE_S) throw new UsageError('older_than must be a duration of at most ten years')
    if (olderThanS < PRUNE_MIN_S) {
      throw new UsageError('older_than must be at least 24h: younger unproven tokens may belong to providers still starting')
    }
    const rows = await this.tokens.pruneUnproven(olderThanS * 1000, apply)
    // A pruned token may still hold a session (a self-minted one that never reconnected): revoked means closed.
    if (apply && this.live !== null) for (const r of rows) await this.live.kickIfToken(r.providerId, r.tokenPrefix)
    return { applied: apply, tokens: rows.map(adminToken) }
  }

  async audit(maxLastUsedAgeS: number): Promise<AuditResponse> {
    if (!Number.isFinite(maxLastUsedAgeS) || maxLastUsedAgeS <= 0 || maxLastUsedAgeS > MAX_AGE_S) {
      throw new UsageError('max_last_used_age must be a positive duration of at most ten years')
    }
    const tokens = await this.tokens.list({ activeOnly: true })
    const sessions = this.live === null ? null : this.live.sessions()
    const offenders = auditFlip(tokens, sessions, this.now(), maxLastUsedAgeS * 1000)
    return {
      // Without the live sessions the answer is unknown, and unknown is not safe.
      safe: sessions !== null && offenders.length === 0,
      poolz_checked: sessions !== null,
      active_tokens: tokens.length,
      live_sessions: sessions === null ? null : sessions.length,
      offenders,
    }
  }

  async listIdentities(): Promise<AdminIdentity[]> {
    return (await this.identities.list()).map(adminIdentity)
  }

  /**
   * Blocks the id (no connect, no recovery, no enrolment) until resetIdentity, revokes its
   * tokens, and always closes its live session: a blocked id that keeps serving is not blocked.
   * The kick comes after the revocation commits, so the provider's reconnect is refused.
   */
  async revokeIdentity(providerId: string): Promise<IdentityActionResponse> {
    checkProviderId(providerId)
    const { revokedTokens } = await this.identities.revoke(providerId)
    const kicked = this.live === null ? null : await this.live.kick(providerId)
    return { provider_id: providerId, action: 'revoked', revoked_tokens: revokedTokens, kicked }
  }

  /**
   * Deletes the id's pin and revokes its tokens, so that the next enrolment (first use) pins a
   * new key. It closes nothing: revoke-identity first to end a live session.
   */
  async resetIdentity(providerId: string): Promise<IdentityActionResponse> {
    checkProviderId(providerId)
    const { revokedTokens } = await this.identities.reset(providerId)
    return { provider_id: providerId, action: 'reset', revoked_tokens: revokedTokens, kicked: null }
  }

  async listCordons(): Promise<CordonRow[]> {
    return (await this.cordons.list()).map((c) => ({ provider_id: c.providerId, reason: c.reason, created_at: c.createdAt.toISOString() }))
  }

  async cordon(providerId: string, reason: string): Promise<CordonResponse> {
    checkProviderId(providerId)
    // Checked here, not only in the HTTP layer: the CLI runs this on the database too.
    if (reason.length > MAX_CORDON_REASON || CONTROL_RE.test(reason)) {
      throw new UsageError(`reason must be at most ${MAX_CORDON_REASON} characters, with no control characters`)
    }
    const live = await this.cordons.cordon(providerId, reason, this.pool())
    return { provider_id: providerId, cordoned: true, live }
  }

  async uncordon(providerId: string): Promise<CordonResponse> {
    checkProviderId(providerId)
    const live = await this.cordons.uncordon(providerId, this.pool())
    return { provider_id: providerId, cordoned: false, live }
  }

  private pool() {
    return this.live ?? { setCordoned: () => false }
  }
}

export function adminToken(tk: TokenInfo): AdminToken {
  return {
    token_prefix: tk.tokenPrefix,
    provider_id: tk.providerId,
    name: tk.providerName,
    origin: tk.origin,
    created_at: tk.createdAt.toISOString(),
    last_used_at: tk.lastUsedAt?.toISOString() ?? null,
    revoked: tk.revokedAt !== null,
    revoked_at: tk.revokedAt?.toISOString() ?? null,
    expires_at: tk.expiresAt?.toISOString() ?? null,
    grace_until: tk.graceUntil?.toISOString() ?? null,
  }
}

/** A pinned key as operators see it: fingerprints, never a key. */
export function adminIdentity(k: IdentityInfo): AdminIdentity {
  return {
    provider_id: k.providerId,
    generation: k.generation,
    key_fingerprint: keyFingerprint(k.publicKey),
    previous_key_fingerprint: k.previousKey === null ? null : keyFingerprint(k.previousKey),
    previous_valid_until: k.previousValidUntil === null ? null : new Date(k.previousValidUntil).toISOString(),
    created_at: k.createdAt.toISOString(),
    rotated_at: k.rotatedAt?.toISOString() ?? null,
    revoked: k.revoked,
    revoked_at: k.revokedAt?.toISOString() ?? null,
  }
}

function checkProviderId(providerId: string): void {
  if (!PROVIDER_ID_RE.test(providerId)) throw new InvalidProviderIdError()
}
