import type { AuditOffender, PoolzRow } from '@poolcoord/protocol'
import type { TokenInfo } from '../tokens/token-store.js'

export type Offender = AuditOffender

/** The fields of a /poolz row the audit reads. */
export type PoolzSession = Pick<PoolzRow, 'provider_id' | 'assigned_id' | 'auth_state' | 'token_prefix'>

/**
 * Is it safe to set require_provider_tokens? Pure: the active tokens, the live sessions and the
 * time in, the list of what would break out. Empty means safe.
 *
 * - An active token that was never used may belong to a provider that never stored it: with
 *   the flag on, that provider is locked out.
 * - A token unused for longer than `maxAgeMs` may belong to a binary that lost it, unless a
 *   live `bearer_validated` session of its provider holds it right now: `last_used_at` moves
 *   only at connect, and a provider connected for a week is the opposite of one that lost its
 *   token.
 * - Tokens of key-pinned ids (identity v2) are never offenders: the key recovers them.
 * - A live `bearerless_duplicate` or `self_minted` session connected without a token; with
 *   the flag on, its next reconnect is refused unless it kept the token it was given.
 */
export function auditFlip(tokens: TokenInfo[], sessions: PoolzSession[] | null, now: Date, maxAgeMs: number): Offender[] {
  const out: Offender[] = []
  const inUse = new Set(
    (sessions ?? [])
      .filter((s) => (s.auth_state === 'bearer_validated' || s.auth_state === 'key_proven') && s.token_prefix)
      .map((s) => `${s.provider_id}\n${s.token_prefix}`),
  )
  for (const tok of tokens) {
    if (tok.revokedAt !== null) continue
    // A key-pinned id's token (it has an expiry): its key recovers it under the flag, so it cannot lock anyone out.
    if (tok.expiresAt !== null) continue
    if (tok.lastUsedAt === null) {
      out.push({
        reason: 'unproven_token',
        provider_id: tok.providerId,
        token_prefix: tok.tokenPrefix,
        detail: `${tok.origin} token never used since ${tok.createdAt.toISOString()}`,
      })
    } else if (now.getTime() - tok.lastUsedAt.getTime() > maxAgeMs && !inUse.has(`${tok.providerId}\n${tok.tokenPrefix}`)) {
      out.push({ reason: 'stale_token', provider_id: tok.providerId, token_prefix: tok.tokenPrefix, detail: `last used ${tok.lastUsedAt.toISOString()}` })
    }
  }
  for (const s of sessions ?? []) {
    if (s.auth_state === 'bearerless_duplicate' || s.auth_state === 'self_minted') {
      out.push({
        reason: s.auth_state === 'self_minted' ? 'self_minted_session' : 'bearerless_duplicate_session',
        provider_id: s.provider_id,
        assigned_id: s.assigned_id,
        token_prefix: s.token_prefix,
        detail: `live session connected without a token (${s.auth_state})`,
      })
    }
  }
  return out
}
