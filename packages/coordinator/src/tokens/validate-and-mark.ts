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

type ValidatedRow = {
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
