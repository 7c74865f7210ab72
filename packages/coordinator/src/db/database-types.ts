import type { Kysely } from 'kysely'
import type pg from 'pg'
import type { DatabaseSchema } from './schema.js'

/** A session for migrations: exec() takes several statements and uses the simple-query path. */
export interface RawSession {
  exec(sqlText: string): Promise<void>
  query<R>(sqlText: string, params: unknown[]): Promise<R[]>
}

export interface Database {
  readonly kind: 'postgres' | 'pglite'
  readonly kysely: Kysely<DatabaseSchema>
  /** PostgreSQL only: the pool Kysely runs on, for named prepared statements (db/prepared-statement.ts). */
  readonly pool?: pg.Pool
  /** Runs fn inside one transaction on one session; commits if it resolves, rolls back if not. */
  rawTransaction<T>(fn: (s: RawSession) => Promise<T>): Promise<T>
  /** Idempotent. Every later query fails, which the callers treat as a store outage. */
  close(): Promise<void>
}
