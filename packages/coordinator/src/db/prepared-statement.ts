import { CompiledQuery } from 'kysely'
import type { Database } from './database.js'

/**
 * A statement on a hot path: every bearer admission runs one. PostgreSQL parses and plans an
 * unnamed statement on every execution; a named one is parsed once per connection and then only
 * bound and executed (bench: 40–54 % more of the validate-and-mark UPDATE per second, and less
 * server CPU each).
 *
 * `R` is the row type the text returns; the text takes its parameters as $1, $2, …
 */
export interface PreparedStatement<R> {
  /** Unique in this process (prefix `poolcoord_`): node-postgres refuses one name for two texts on one connection. */
  readonly name: string
  readonly text: string
  /** Type only: ties the row type to the statement. */
  readonly row?: R
}

export function preparedStatement<R>(name: string, text: string): PreparedStatement<R> {
  return { name, text }
}

/**
 * Runs `stmt` once. On PostgreSQL, as a named statement on the pool Kysely runs on:
 * node-postgres prepares it on each connection the first time that connection runs it, and a
 * connection that replaces a broken one (a restart, pg_terminate_backend) starts with nothing
 * prepared, so it prepares again. Each call is still one statement in its own implicit
 * transaction, and its errors are the server's, with `code` and `constraint` as pg-errors.ts
 * reads them. On PGlite (one in-process connection, no parse to save) it goes through Kysely.
 *
 * Callers bound it with storeCall like any other store operation.
 */
export async function runPrepared<R>(db: Database, stmt: PreparedStatement<R>, values: readonly unknown[]): Promise<R[]> {
  if (db.pool !== undefined) return (await db.pool.query<R & object>({ name: stmt.name, text: stmt.text, values: [...values] })).rows
  return (await db.kysely.executeQuery<R>(CompiledQuery.raw(stmt.text, [...values]))).rows
}
