import { sql } from 'kysely'
import t from 'tap'
import type { Database } from '../../src/db/database.js'
import { leasePgliteDatabase } from '../helpers/pglite-pool.js'

/*
 * The PGlite pass lends each test process's PGlites from test to test (helpers/pglite-pool.ts).
 * Every test's database must still start as the migrated template left it, and nothing a test
 * leaves behind may reach the next one. Each case here fails on a pool that skips the step it
 * names. (PGlite whatever TEST_DATABASE_URL says: the pool is what is under test.)
 */

async function xid(db: Database): Promise<number> {
  const r = await sql<{ x: string }>`SELECT txid_current()::text AS x`.execute(db.kysely)
  return Number(r.rows[0]?.x)
}

async function count(db: Database, table: 'rate_buckets' | 'provider_tokens'): Promise<number> {
  const r = await sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql.table(table)}`.execute(db.kysely)
  return r.rows[0]?.n ?? -1
}

const bucket = (db: Database, key: string): Promise<unknown> =>
  sql`INSERT INTO rate_buckets (bucket, level, updated_ms) VALUES (${key}, 1, 1)`.execute(db.kysely)

t.test('the next lease is the same PGlite, emptied: rows, sequences and session state do not carry over', async (t) => {
  const first = await leasePgliteDatabase()
  await bucket(first, 'a')
  await sql`SET statement_timeout = 1234`.execute(first.kysely)
  await first.rawTransaction(async (s) => void (await s.query('SELECT pg_advisory_lock(42)', [])))
  const firstXid = await xid(first)
  await first.close()

  const next = await leasePgliteDatabase()
  t.teardown(() => next.close())
  t.ok((await xid(next)) > firstXid, 'the same PostgreSQL (its transaction ids went on), so the pool was used')
  t.equal(await count(next, 'rate_buckets'), 0, "the previous test's rows are gone")
  const timeout = await sql<{ statement_timeout: string }>`SHOW statement_timeout`.execute(next.kysely)
  t.equal(timeout.rows[0]?.statement_timeout, '0', 'session settings are reset')
  const locks = await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory'`.execute(next.kysely)
  t.equal(locks.rows[0]?.n, 0, 'session advisory locks are released')
})

t.test('a late write through a closed lease fails and never lands in the next one', async (t) => {
  const first = await leasePgliteDatabase()
  await first.close()
  const next = await leasePgliteDatabase()
  t.teardown(() => next.close())
  await t.rejects(bucket(first, 'late-kysely'), 'through Kysely')
  await t.rejects(
    first.rawTransaction((s) => s.exec(`INSERT INTO rate_buckets (bucket, level, updated_ms) VALUES ('late-raw', 1, 1)`)),
    /PGlite is closed/,
    'through a raw transaction, as from a closed PGlite',
  )
  t.equal(await count(next, 'rate_buckets'), 0, 'nothing landed')
})

t.test('a transaction left open is rolled back, not inherited', async (t) => {
  const first = await leasePgliteDatabase()
  // What a caller that gave up mid-transaction leaves: BEGIN and a write, no COMMIT.
  await sql`BEGIN`.execute(first.kysely)
  await bucket(first, 'uncommitted')
  const firstXid = await xid(first)
  await first.close()
  const next = await leasePgliteDatabase()
  t.teardown(() => next.close())
  t.ok((await xid(next)) > firstXid, 'the same PGlite, lent again')
  await t.rejects(sql`SAVEPOINT probe`.execute(next.kysely), /transaction block/, 'the next lease is outside any transaction')
  t.equal(await count(next, 'rate_buckets'), 0, 'and the write was rolled back')
})

t.test('a lease whose schema changed is closed, not lent again', async (t) => {
  const first = await leasePgliteDatabase()
  // A change that emptying the tables does not trip over (a renamed table would be).
  await sql`ALTER TABLE rate_buckets ADD COLUMN extra integer`.execute(first.kysely)
  const firstXid = await xid(first)
  await first.close()
  const next = await leasePgliteDatabase()
  t.teardown(() => next.close())
  const extra = await sql<{
    n: number
  }>`SELECT count(*)::int AS n FROM information_schema.columns WHERE table_name = 'rate_buckets' AND column_name = 'extra'`.execute(next.kysely)
  t.equal(extra.rows[0]?.n, 0, 'the next lease has the migrated schema')
  t.ok((await xid(next)) < firstXid, 'from a fresh PGlite (its transaction ids start again from the template)')
})

t.test('a changed index or column default is a changed schema too', async (t) => {
  const first = await leasePgliteDatabase()
  await sql`ALTER TABLE rate_buckets ALTER COLUMN level SET DEFAULT 7`.execute(first.kysely)
  await first.close()
  const next = await leasePgliteDatabase()
  t.teardown(() => next.close())
  const d = await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_attrdef WHERE adrelid = 'rate_buckets'::regclass`.execute(next.kysely)
  t.equal(d.rows[0]?.n, 0, 'the default is gone: a fresh PGlite')
})

t.test('a test that fails holding a transaction does not hang the file: that PGlite is closed', async (t) => {
  const first = await leasePgliteDatabase()
  let held = false
  // What a failed test leaves: a transaction waiting on a release that never comes.
  void first
    .rawTransaction(async () => {
      held = true
      await new Promise<void>(() => undefined)
    })
    .catch(() => undefined)
  await t.resolves(
    Promise.race([first.close(), new Promise((_, reject) => setTimeout(() => reject(new Error('close hung')), 10_000).unref())]),
    'close() returns',
  )
  t.ok(held, 'the transaction was holding PGlite')
  const next = await leasePgliteDatabase()
  t.teardown(() => next.close())
  t.equal(await count(next, 'rate_buckets'), 0, 'the next lease works')
})
