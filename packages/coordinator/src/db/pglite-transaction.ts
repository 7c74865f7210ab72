import type { PGlite } from '@electric-sql/pglite'
import type { Database } from './database-types.js'

/**
 * A PGlite's rawTransaction: migrations' several statements through exec(). PGlite's own
 * transaction() holds its exclusive lock, so nothing interleaves.
 */
export function pgliteRawTransaction(lite: PGlite): Database['rawTransaction'] {
  return (fn) =>
    lite.transaction((tx) =>
      fn({
        exec: async (text) => void (await tx.exec(text)),
        query: async <R>(text: string, params: unknown[]) => (await tx.query<R>(text, params)).rows,
      }),
    )
}
