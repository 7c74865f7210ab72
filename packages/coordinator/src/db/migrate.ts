import { readdir, readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import type { Database } from './database-types.js'

/** sql/ sits two levels above both src/db/ (tests) and dist/db/ (built). */
export const SQL_DIR = fileURLToPath(new URL('../../sql/', import.meta.url))

// Any fixed number works; it only has to be the same in every coordinator and CLI process.
const MIGRATION_LOCK_ID = 7_214_004_221

export interface MigrationResult {
  applied: string[]
  alreadyApplied: string[]
}

/**
 * Applies the pending sql/NNNN_*.sql files in name order, in one transaction, under a
 * transaction-scoped advisory lock so that two processes starting together apply each file
 * once. Each file goes through the simple-query path, so it may hold several statements.
 */
export async function migrate(db: Pick<Database, 'rawTransaction'>, dir = SQL_DIR): Promise<MigrationResult> {
  const files = (await readdir(dir)).filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f)).sort()
  const texts = await Promise.all(files.map((f) => readFile(new URL(f, `file://${dir}/`), 'utf8')))
  return db.rawTransaction(async (s) => {
    await s.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_ID])
    await s.exec(
      `CREATE TABLE IF NOT EXISTS schema_migrations (
         name text PRIMARY KEY,
         applied_at timestamptz NOT NULL DEFAULT now()
       )`,
    )
    const done = new Set((await s.query<{ name: string }>('SELECT name FROM schema_migrations', [])).map((r) => r.name))
    const unknown = [...done].filter((name) => !files.includes(name))
    if (unknown.length > 0) {
      throw new Error(`database has migrations this build does not know (${unknown.join(', ')}): run a newer build`)
    }
    const applied: string[] = []
    for (const [i, name] of files.entries()) {
      if (done.has(name)) continue
      await s.exec(texts[i] as string)
      await s.query('INSERT INTO schema_migrations (name) VALUES ($1)', [name])
      applied.push(name)
    }
    return { applied, alreadyApplied: files.filter((f) => done.has(f)) }
  })
}
