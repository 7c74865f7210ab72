import { PGlite } from '@electric-sql/pglite'
import tap from 'tap'
import { pgliteDatabase, type Database } from '../../src/db/database.js'
import { migrate } from '../../src/db/migrate.js'
import { PGLITE_START_PARAMS } from '../../src/db/pglite-seed.js'
import { pgliteRawTransaction } from '../../src/db/pglite-transaction.js'
import { withPgliteTemplate } from './pglite-template.js'

/*
 * The PGlite pass made about 190 test databases, at about 1.1 s of CPU each (untar the template
 * into PGlite's memory filesystem, instantiate PostgreSQL, start it): a fifth of the pass. A test
 * process now lends its PGlites from test to test, each put back as the migrated template left it:
 *
 * - Lent, a PGlite is reached only through a stand-in that fails every call once the test's
 *   database is closed (as a closed PGlite does), so a late write of one test never lands in the
 *   next test's database. Closing a database (the fail-closed tests' store outage) is therefore
 *   exactly what it was.
 * - Put back: ROLLBACK (a transaction left open by a caller that lost its connection), DISCARD ALL
 *   (session settings, prepared statements, advisory locks, LISTENs), then every table is
 *   emptied. The tables hold nothing after the migrations but their own list (schema_migrations),
 *   which stays.
 * - A test that changed the schema (abuse-limits drops a function) leaves a catalog that differs
 *   from the template's: that PGlite is closed, not put back. So is one that was closed
 *   underneath, or whose reset failed or did not finish within 2 s (a transaction the test held
 *   and never ended).
 * - Two databases open at once in one test are two PGlites.
 * - When the file's tests are done, the pool closes what it holds: an idle PostgreSQL keeps a timer
 *   (its statistics flush, 10 s) that would hold the process open.
 */

const idle: PGlite[] = []
let template: { fingerprint: string; truncate: string } | undefined

/** A migrated database for one test, on a PGlite of this process's pool. */
export async function leasePgliteDatabase(): Promise<Database> {
  const lite = idle.pop() ?? (await fresh())
  let lent = true
  return pgliteDatabase(
    lend(lite, () => lent),
    async () => {
      lent = false
      await giveBack(lite)
    },
  )
}

async function fresh(): Promise<PGlite> {
  const lite = await withPgliteTemplate(async (loadDataDir) => {
    const made = await PGlite.create({ loadDataDir, startParams: [...PGLITE_START_PARAMS] })
    try {
      // The template is migrated; this finds nothing to do, unless it is older than the migrations.
      await migrate({ rawTransaction: pgliteRawTransaction(made) })
      return made
    } catch (err) {
      await made.close()
      throw err
    }
  })
  if (template === undefined) {
    template = { fingerprint: await fingerprint(lite), truncate: await truncateStatement(lite) }
    tap.teardown(() => Promise.all(idle.splice(0).map((l) => l.close().catch(() => undefined))).then(() => undefined))
  }
  return lite
}

/**
 * A test that failed while holding a transaction (a lock it meant to release) leaves it open for
 * good: the reset, queued behind it, would never run and the teardown would hang the file. Past
 * this, the PGlite is closed instead (close() does not wait for the transaction).
 */
const RESET_DEADLINE_MS = 2_000

async function giveBack(lite: PGlite): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('reset deadline')), RESET_DEADLINE_MS)
  })
  try {
    if (lite.closed || template === undefined) throw new Error('closed')
    await Promise.race([reset(lite, template), deadline])
    idle.push(lite)
  } catch {
    if (!lite.closed) await lite.close().catch(() => undefined)
  } finally {
    clearTimeout(timer)
  }
}

async function reset(lite: PGlite, like: { fingerprint: string; truncate: string }): Promise<void> {
  // Queued behind whatever the test still had in flight (PGlite runs one statement at a time).
  await lite.exec('ROLLBACK')
  await lite.exec('DISCARD ALL')
  if ((await fingerprint(lite)) !== like.fingerprint) throw new Error('the schema changed')
  await lite.exec(like.truncate)
}

/** What was lent, failing every call once `isLent` says the test's database is closed. */
function lend(lite: PGlite, isLent: () => boolean): PGlite {
  const closedError = (): Error => new Error('PGlite is closed')
  const stand = {
    query: (...args: Parameters<PGlite['query']>) => (isLent() ? lite.query(...args) : Promise.reject(closedError())),
    exec: (...args: Parameters<PGlite['exec']>) => (isLent() ? lite.exec(...args) : Promise.reject(closedError())),
    transaction: (...args: Parameters<PGlite['transaction']>) => (isLent() ? lite.transaction(...args) : Promise.reject(closedError())),
    // Kysely's driver closes the PGlite it was given when Kysely ends: a lent one is given back instead.
    close: () => Promise.resolve(),
    get closed() {
      return !isLent() || lite.closed
    },
  }
  // The database layer calls query, exec, transaction, close and closed only (pgliteDatabase,
  // Kysely's PGlite dialect, pgliteRawTransaction); anything else would be a TypeError here.
  return stand as unknown as PGlite
}

/** The user schema's tables (and their row security), columns (and defaults), index definitions, functions, triggers (and whether enabled), constraints, and the migrations it records. */
async function fingerprint(lite: PGlite): Promise<string> {
  const { rows } = await lite.query<{ f: string }>(`
    SELECT md5(string_agg(x, '|' ORDER BY x)) AS f FROM (
      SELECT format('c:%s:%s:%s:%s:%s', c.relname, c.relkind, c.relrowsecurity, c.reloptions,
               string_agg(format('%s %s %s %s', a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid)), ',' ORDER BY a.attnum)) AS x
        FROM pg_class c LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relnamespace = 'public'::regnamespace GROUP BY c.relname, c.relkind, c.relrowsecurity, c.reloptions
      UNION ALL SELECT format('i:%s', pg_get_indexdef(i.indexrelid)) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relnamespace = 'public'::regnamespace
      UNION ALL SELECT format('p:%s:%s', p.oid::regprocedure, md5(p.prosrc)) FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
      UNION ALL SELECT format('t:%s:%s:%s', t.tgname, t.tgrelid::regclass, t.tgenabled) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relnamespace = 'public'::regnamespace
      UNION ALL SELECT format('k:%s:%s', k.conname, pg_get_constraintdef(k.oid)) FROM pg_constraint k WHERE k.connamespace = 'public'::regnamespace
      UNION ALL SELECT format('m:%s', m.name) FROM schema_migrations m
    ) s`)
  return rows[0]?.f ?? ''
}

async function truncateStatement(lite: PGlite): Promise<string> {
  const { rows } = await lite.query<{ name: string }>(
    `SELECT format('%I', tablename) AS name FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations' ORDER BY tablename`,
  )
  if (rows.length === 0) throw new Error('the template has no tables')
  return `TRUNCATE ${rows.map((r) => r.name).join(', ')} RESTART IDENTITY CASCADE`
}
