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
