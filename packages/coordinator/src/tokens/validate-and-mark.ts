import { preparedStatement } from '../db/prepared-statement.js'
import { pinnedKeyOf, type PinnedKey } from './pinned-key.js'

/** What validateAndMarkUsed learnt, all from one statement. */
export interface ValidatedToken {
  /** The row's id: later statements name the token by it, never by its hash. */
  tokenId: string
  providerId: string
  tokenPrefix: string
  /** The token has a successor and validates only until its grace ends. */
  inGrace: boolean
  /** Clock ms; null for tokens that never expire (ids without a pinned key). */
  expiresAt: number | null
  /** The id's row in provider_identity_keys (revoked or not), read in the same statement: a v2 connect decides on it without reading again. */
  pin: PinnedKey | null
}

export type ValidatedRow = {
  id: string
  provider_id: string
  token_prefix: string
  in_grace: boolean
  expires_at: Date | null
  public_key: string | null
  generation: number | null
  previous_key: string | null
  previous_valid_until: Date | null
  key_revoked_at: Date | null
}

/**
 * Validates and marks proven in one UPDATE: $1 the token's hash, $2 `now` from the coordinator's
 * clock, against which revocation, grace and expiry are checked. The id's pinned key is read in
 * the same statement, so every fact the admission needs about this token comes from one snapshot
 * and nothing about it is read again afterwards (the race of seed 000). Every bearer admission
 * runs it, hence a named statement. Its columns are listed, never `*`: a cached plan must not
 * change its result type.
 */
export const VALIDATE_AND_MARK = preparedStatement<ValidatedRow>(
  'poolcoord_token_validate_and_mark',
  `WITH t AS (
     UPDATE provider_tokens SET last_used_at = now()
     WHERE token_hash = $1 AND revoked_at IS NULL
       AND (grace_until IS NULL OR grace_until > $2)
       AND (expires_at IS NULL OR expires_at > $2)
     RETURNING id, provider_id, token_prefix, grace_until IS NOT NULL AS in_grace, expires_at
   )
   SELECT t.id, t.provider_id, t.token_prefix, t.in_grace, t.expires_at,
          k.public_key, k.generation, k.previous_key, k.previous_valid_until, k.revoked_at AS key_revoked_at
   FROM t LEFT JOIN provider_identity_keys k ON k.provider_id = t.provider_id`,
)

/**
 * The same check for several tokens at once (validate-batcher.ts): $1 their hashes, $2 each
 * one's `now`, pairwise. Each row is still validated and marked by one atomic statement, with the
 * same conditions at its own `now`, re-checked on the newest row version when a revoke or renewal
 * committed first, under the same lock strength as the single UPDATE (NO KEY UPDATE).
 *
 * Rows that another transaction holds are skipped, not waited for: a batch can neither deadlock
 * nor keep other providers' rows locked while it waits. Such a row comes back with `skipped`
 * (a hash that looked valid in the statement's snapshot but was not marked), and the batcher
 * checks that token alone, with the single statement, which waits for it. Every other row is
 * either marked and returned (`skipped` false), or absent: unknown, revoked, past grace or expired.
 */
export const VALIDATE_AND_MARK_MANY = preparedStatement<ValidatedRow & { token_hash: string; skipped: boolean }>(
  'poolcoord_token_validate_and_mark_many',
  `WITH v AS (SELECT * FROM unnest($1::text[], $2::timestamptz[]) AS v(hash, at)),
   l AS (
     SELECT p.id FROM provider_tokens p JOIN v ON p.token_hash = v.hash
     WHERE p.revoked_at IS NULL
       AND (p.grace_until IS NULL OR p.grace_until > v.at)
       AND (p.expires_at IS NULL OR p.expires_at > v.at)
     FOR NO KEY UPDATE OF p SKIP LOCKED
   ),
   t AS (
     UPDATE provider_tokens p SET last_used_at = now()
     FROM l WHERE p.id = l.id
     RETURNING p.token_hash, p.id, p.provider_id, p.token_prefix, p.grace_until IS NOT NULL AS in_grace, p.expires_at
   )
   SELECT false AS skipped, t.token_hash, t.id, t.provider_id, t.token_prefix, t.in_grace, t.expires_at,
          k.public_key, k.generation, k.previous_key, k.previous_valid_until, k.revoked_at AS key_revoked_at
   FROM t LEFT JOIN provider_identity_keys k ON k.provider_id = t.provider_id
   UNION ALL
   SELECT true, p.token_hash, NULL::bigint, NULL::text, NULL::text, NULL::boolean, NULL::timestamptz,
          NULL::text, NULL::integer, NULL::text, NULL::timestamptz, NULL::timestamptz
   FROM provider_tokens p JOIN v ON p.token_hash = v.hash
   WHERE p.revoked_at IS NULL
     AND (p.grace_until IS NULL OR p.grace_until > v.at)
     AND (p.expires_at IS NULL OR p.expires_at > v.at)
     AND p.id NOT IN (SELECT id FROM l)`,
)

export function validatedToken(row: ValidatedRow): ValidatedToken {
  return {
    tokenId: String(row.id),
    providerId: row.provider_id,
    tokenPrefix: row.token_prefix,
    inGrace: row.in_grace,
    expiresAt: row.expires_at === null ? null : new Date(row.expires_at).getTime(),
    pin: row.public_key === null ? null : pinnedKeyOf({ ...row, public_key: row.public_key, generation: row.generation ?? 1, revoked_at: row.key_revoked_at }),
  }
}
