import type { ColumnType, Generated, Selectable } from 'kysely'

/** Hand-written to match sql/; test/integration/token-store.test.ts checks the two agree. */
export interface ProviderTokensTable {
  id: Generated<string>
  token_hash: string
  token_prefix: string
  provider_id: string
  provider_name: string
  origin: TokenOrigin
  created_at: ColumnType<Date, never, never>
  last_used_at: ColumnType<Date | null, never, Date | null>
  revoked_at: ColumnType<Date | null, never, Date | null>
  expires_at: ColumnType<Date | null, Date | null | undefined, Date | null>
  grace_until: ColumnType<Date | null, Date | null | undefined, Date | null>
}

export type TokenOrigin = 'self_minted' | 'operator_issued'

export interface ProviderCordonsTable {
  provider_id: string
  reason: string
  created_at: ColumnType<Date, never, never>
}

/** A provider's pinned Ed25519 key (sql/0003_provider_identity.sql). */
export interface ProviderIdentityKeysTable {
  provider_id: string
  public_key: string
  generation: ColumnType<number, number | undefined, number>
  previous_key: ColumnType<string | null, string | null | undefined, string | null>
  previous_valid_until: ColumnType<Date | null, Date | null | undefined, Date | null>
  created_at: ColumnType<Date, never, never>
  rotated_at: ColumnType<Date | null, never, Date | null>
  revoked_at: ColumnType<Date | null, never, Date | null>
}

export interface DatabaseSchema {
  provider_tokens: ProviderTokensTable
  provider_cordons: ProviderCordonsTable
  provider_identity_keys: ProviderIdentityKeysTable
}

export type ProviderTokenRow = Selectable<ProviderTokensTable>
