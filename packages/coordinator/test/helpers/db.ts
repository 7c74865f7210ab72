import { createHash } from 'node:crypto'
import pg from 'pg'
import type { Test } from 'tap'
import { openDatabase, type Database } from '../../src/db/database.js'
import { migrate } from '../../src/db/migrate.js'
import type { Logger } from '../../src/logger.js'
import { captureLogs } from './logs.js'
import { leasePgliteDatabase } from './pglite-pool.js'
import { startPrivatePg } from './private-pg.js'

/** Set by .ci/run to the local Postgres; unset means every test runs on in-memory PGlite. */
export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL || null

let counter = 0

/**
 * A migrated database of its own for one test: a fresh schema on TEST_DATABASE_URL, or an
 * in-memory PGlite as fresh as the migrated template. Torn down with the test.
 */
export async function createTestDb(t: Test, log: Logger = captureLogs().logger): Promise<Database> {
  if (TEST_DATABASE_URL === null) {
    // A PGlite of this process's pool, as the migrated template left it (helpers/pglite-pool.ts).
    const db = await leasePgliteDatabase()
    t.teardown(() => db.close())
    return db
  }
  const seed = `${process.pid}:${t.fullname}:${counter++}:${Date.now()}`
  const schema = `t_${createHash('sha1').update(seed).digest('hex').slice(0, 16)}`
  await admin(`CREATE SCHEMA ${schema}`)
  const db = await openDatabase({ url: TEST_DATABASE_URL, dataDir: 'memory', schema, log, poolSize: 25 })
  t.teardown(async () => {
    await db.close()
    if (!process.env.KEEP_TEST_SCHEMA) await admin(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
  })
  await migrate(db)
  return db
}

async function admin(text: string): Promise<void> {
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL as string })
  await client.connect()
  try {
    await client.query(text)
  } finally {
    await client.end()
  }
}

/**
 * A migrated PostgreSQL database for a test about PostgreSQL itself (lock waits, concurrent
 * sessions; PGlite has one connection): on TEST_DATABASE_URL when set, else on a private cluster
 * started for this test (helpers/private-pg.ts), so that such a test never has to skip.
 */
export async function createPostgresTestDb(t: Test, log: Logger = captureLogs().logger): Promise<Database> {
  if (TEST_DATABASE_URL !== null) return createTestDb(t, log)
  const pg = await startPrivatePg(t)
  const db = await openDatabase({ url: await pg.createDatabase('t'), dataDir: 'memory', log, poolSize: 25 })
  t.teardown(() => db.close())
  await migrate(db)
  return db
}
