/**
 * A provider's pinned identity key as admission reads it (identity v2). Times are clock ms. Its
 * own module, because both token stores return it: the token check reads it with the token.
 */
export interface PinnedKey {
  providerId: string
  publicKey: string
  generation: number
  previousKey: string | null
  previousValidUntil: number | null
  revoked: boolean
}

/** A provider_identity_keys row (sql/0003) as admission reads it. */
export function pinnedKeyOf(r: {
  provider_id: string
  public_key: string
  generation: number | string
  previous_key: string | null
  previous_valid_until: Date | string | null
  revoked_at: Date | string | null
}): PinnedKey {
  return {
    providerId: r.provider_id,
    publicKey: r.public_key,
    generation: Number(r.generation),
    previousKey: r.previous_key,
    previousValidUntil: r.previous_valid_until === null ? null : new Date(r.previous_valid_until).getTime(),
    revoked: r.revoked_at !== null,
  }
}
