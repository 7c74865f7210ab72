import { existsSync, mkdirSync, readFileSync, realpathSync, unlinkSync, writeFileSync, writeSync } from 'node:fs'
import path from 'node:path'
import { PGlite } from '@electric-sql/pglite'
import { DatabaseLockedError } from '../errors.js'
import { Kysely, PostgresDialect } from 'kysely'
import { PGliteDialect } from 'kysely-pglite-dialect'
import pg from 'pg'
import type { Logger } from '../logger.js'
import { PGLITE_START_PARAMS, pgliteSeedFile, plantPgliteSeed, readPgliteSeed } from './pglite-seed.js'
import { DurableNodeFS } from './pglite-durability.js'
import { pgliteRawTransaction } from './pglite-transaction.js'
import type { Database, RawSession } from './database-types.js'
import type { DatabaseSchema } from './schema.js'

export type { Database, RawSession } from './database-types.js'

export interface DatabaseOptions {
  /** postgres://… for Postgres; null for the embedded PGlite. */
  url: string | null
  /** PGlite files live in <dataDir>/pglite. 'memory' keeps them in memory (tests). */
  dataDir: string | 'memory'
  /** Postgres only: run every statement in this schema (one schema per test file). */
  schema?: string
  /** Postgres only: upper bound on any one statement, so a stuck database fails closed. */
  statementTimeoutMs?: number
  poolSize?: number
  /**
   * PGlite only: when there is no database yet, start from this data directory (a tarball from
   * PGlite's dumpDataDir()) instead of the built seed or initdb. The tests use it in memory.
   */
  loadDataDir?: Blob
  /** PGlite only: the seed a first start writes (db/pglite-seed.ts); default the built one, null for none. */
  seedFile?: string | null
  log: Logger
}

export async function openDatabase(opts: DatabaseOptions): Promise<Database> {
  return opts.url === null ? openPglite(opts) : openPostgres(opts.url, opts)
}

function openPostgres(url: string, opts: DatabaseOptions): Database {
  if (opts.schema !== undefined && !/^[a-z_][a-z0-9_]{0,62}$/.test(opts.schema)) {
    throw new Error('schema name must match ^[a-z_][a-z0-9_]*$')
  }
  const settings = [`-c statement_timeout=${opts.statementTimeoutMs ?? 5000}`]
  if (opts.schema !== undefined) settings.push(`-c search_path=${opts.schema}`)
  const pool = new pg.Pool({
    connectionString: url,
    options: settings.join(' '),
    max: opts.poolSize ?? 10,
    connectionTimeoutMillis: 5000,
    // Client-side bound as well, for a server that stops answering altogether.
    query_timeout: (opts.statementTimeoutMs ?? 5000) + 1000,
    idleTimeoutMillis: 30_000,
  })
  // Without a listener, an idle client's connection error would crash the process.
  pool.on('error', (err) => opts.log.warn({ err }, 'postgres idle client error'))
  const kysely = new Kysely<DatabaseSchema>({ dialect: new PostgresDialect({ pool }) })
  let closed: Promise<void> | undefined
  return {
    kind: 'postgres',
    kysely,
    pool,
    async rawTransaction(fn) {
      const client = await pool.connect()
      try {
        await client.query('BEGIN')
        const session: RawSession = {
          exec: async (text) => void (await client.query(text)),
          query: async (text, params) => (await client.query(text, params)).rows,
        }
        const out = await fn(session)
        await client.query('COMMIT')
        return out
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined)
        throw err
      } finally {
        client.release()
      }
    },
    close() {
      // Kysely ends the pool only if Kysely itself used it; a pool that only ran migrations
      // would otherwise keep an idle connection, and the process, alive.
      closed ??= kysely.destroy().then(() => (pool.ended || pool.ending ? undefined : pool.end()))
      return closed
    },
  }
}

async function openPglite(opts: DatabaseOptions): Promise<Database> {
  let dir: string | undefined
  if (opts.dataDir !== 'memory') {
    dir = path.resolve(opts.dataDir, 'pglite')
    mkdirSync(dir, { recursive: true, mode: 0o700 })
  }
  const unlock = dir === undefined ? () => undefined : lockDataDir(dir)
  let lite: PGlite | undefined
  try {
    // PGlite cannot open a data directory through a symbolic link (one to another disk, say): it
    // gets the directory itself. The lock stays at <data dir>/pglite.lock, where the CLI looks.
    if (dir !== undefined) dir = realpathSync(dir)
    const fresh = dir === undefined || !existsSync(path.join(dir, 'PG_VERSION'))
    const startParams = [...PGLITE_START_PARAMS]
    // On disk, through the filesystem that syncs (db/pglite-durability.ts); in memory, PGlite's own.
    const fs = dir === undefined ? undefined : new DurableNodeFS(dir, (err) => fsyncFailed(err, opts.log))
    if (fresh && opts.loadDataDir !== undefined) {
      // A tarball replaces initdb on a first start only; an existing database opens as it is.
      lite = await PGlite.create({ fs, loadDataDir: opts.loadDataDir, startParams })
    } else {
      if (fresh && dir !== undefined) createEmbedded(dir, opts.seedFile, opts.log)
      lite = await PGlite.create({ fs, startParams })
    }
    await fs?.verifyDurable(lite)
  } catch (err) {
    await lite?.close().catch(() => undefined)
    unlock()
    throw err
  }
  const open = lite
  // As for Postgres: Kysely closes the driver only if Kysely used it.
  return pgliteDatabase(open, () => (open.closed ? Promise.resolve() : open.close()).finally(unlock))
}

/**
 * A Database over an open PGlite. close() ends Kysely (which closes the PGlite it was given, if it
 * used it), then runs `release`. The tests lend one PGlite to test after test this way
 * (test/helpers/pglite-pool.ts).
 */
export function pgliteDatabase(lite: PGlite, release: () => Promise<void>): Database {
  const kysely = new Kysely<DatabaseSchema>({ dialect: new PGliteDialect(lite) })
  let closed: Promise<void> | undefined
  return {
    kind: 'pglite',
    kysely,
    rawTransaction: pgliteRawTransaction(lite),
    close() {
      closed ??= kysely.destroy().finally(release)
      return closed
    },
  }
}

/**
 * A failed fsync of the embedded database: PostgreSQL's PANIC. The process must end (see
 * db/pglite-durability.ts): the line is written synchronously, since an exit does not wait for
 * an asynchronous log destination, and the exit code asks systemd to restart it.
 */
function fsyncFailed(err: unknown, log: Logger): never {
  // Whatever the log or stderr do (a closed pipe throws EPIPE), the exit happens: returning into
  // PGlite would report the write as done.
  try {
    const code = (err as { code?: unknown } | null)?.code
    log.fatal({ event: 'db.fsync_failed', err }, 'the embedded database could not write to its disk; exiting')
    writeSync(2, `poolcoord: the embedded database could not write to its disk (fsync failed${typeof code === 'string' ? `: ${code}` : ''}); exiting\n`)
  } finally {
    process.exit(1)
  }
}

/**
 * A first start: the built seed when there is one for this PGlite and these migrations
 * (db/pglite-seed.ts), else PGlite's own initdb, which takes seconds and holds its memory.
 */
function createEmbedded(dir: string, seedOption: string | null | undefined, log: Logger): void {
  // Nothing about the seed may stop a start: at worst, initdb runs as it always could.
  let seedFile: string | null = null
  try {
    seedFile = seedOption === undefined ? pgliteSeedFile() : seedOption
    if (seedFile !== null && existsSync(seedFile)) {
      const seed = readPgliteSeed(seedFile)
      if (seed !== null) {
        plantPgliteSeed(seed.entries, dir)
        log.info({ event: 'db.created', dir, from: 'seed' }, `created the embedded database in ${dir}`)
        return
      }
      log.warn({ event: 'db.seed_failed', seed: seedFile }, `the pre-initialised embedded database ${seedFile} is damaged: rebuild it with npm run build`)
    }
  } catch (err) {
    log.warn({ event: 'db.seed_failed', seed: seedFile, err }, `could not write the pre-initialised embedded database to ${dir}`)
  }
  log.info(
    { event: 'db.creating', dir, from: 'initdb' },
    `creating the embedded database in ${dir} with initdb (first start without a pre-initialised one; this takes a few seconds)`,
  )
}

/**
 * PGlite is one process's database: a second process opening the same files would corrupt
 * them. The owner holds <dir>.lock (its pid, created exclusively); a lock whose process is gone
 * is taken over. Returns the release function.
 */
function lockDataDir(dir: string): () => void {
  const lock = `${dir}.lock`
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(lock, `${process.pid}\n`, { flag: 'wx', mode: 0o600 })
      return () => {
        try {
          if (readFileSync(lock, 'utf8').trim() === String(process.pid)) unlinkSync(lock)
        } catch {
          // already gone
        }
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      const pid = Number(readFileSync(lock, 'utf8').trim())
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) throw new DatabaseLockedError(pid)
      unlinkSync(lock) // stale: its process is gone
    }
  }
  throw new DatabaseLockedError(0)
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
