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
}

export type TokenOrigin = 'self_minted' | 'operator_issued'

export interface ProviderCordonsTable {
  provider_id: string
  reason: string
  created_at: ColumnType<Date, never, never>
}

export interface DatabaseSchema {
  provider_tokens: ProviderTokensTable
  provider_cordons: ProviderCordonsTable
}

export type ProviderTokenRow = Selectable<ProviderTokensTable>
