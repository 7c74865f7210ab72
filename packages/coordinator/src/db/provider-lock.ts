import pg from 'pg'
import { StoreUnavailableError } from '../errors.js'
import type { Logger } from '../logger.js'

/**
 * The advisory-lock class of tokenless admission (the first argument of pg_advisory_xact_lock);
 * the second is hashtext(provider_id). A fixed number, so that an operator can find these locks
 * in pg_locks (classid 0x706f6f6c, "pool").
 */
export const ADMISSION_LOCK_CLASS = 0x706f6f6c

/**
 * Serialises tokenless admission for one provider_id across coordinator processes (cluster mode,
 * specs/cluster.md §8): a PostgreSQL advisory transaction lock, held by an open transaction for as
 * long as `fn` runs, and released by COMMIT, by ROLLBACK, or by the server when the connection
 * dies. There is no TTL to tune and nothing to clean up after a crash.
 *
 * The locks live on a pool of their own. The work inside `fn` uses the main pool, and a lock
 * holder waiting for a main-pool connection that only lock holders could free would deadlock;
 * with separate pools it cannot. `statement_timeout` bounds the wait for a lock, so a peer paused
 * while holding one makes admissions of that id fail closed (4005) rather than hang.
 */
export class ProviderLock {
  readonly #pool: pg.Pool

  constructor(url: string, opts: { log: Logger; waitTimeoutMs: number; size?: number }) {
    this.#pool = new pg.Pool({
      connectionString: url,
      options: `-c statement_timeout=${opts.waitTimeoutMs}`,
      max: opts.size ?? 8,
      connectionTimeoutMillis: opts.waitTimeoutMs,
      query_timeout: opts.waitTimeoutMs + 1000,
      idleTimeoutMillis: 30_000,
    })
    this.#pool.on('error', (err) => opts.log.warn({ err }, 'postgres lock client error'))
  }

  /** Runs `fn` holding the id's lock. Throws StoreUnavailableError when the lock cannot be had. */
  async run<T>(providerId: string, fn: () => Promise<T>): Promise<T> {
    let client: pg.PoolClient
    try {
      client = await this.#pool.connect()
    } catch (err) {
      throw new StoreUnavailableError(err)
    }
    let broken = false
    try {
      try {
        await client.query('BEGIN')
        await client.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [ADMISSION_LOCK_CLASS, providerId])
      } catch (err) {
        broken = true
        throw new StoreUnavailableError(err)
      }
      const out = await fn()
      // A lock lost meanwhile (the connection died) shows here: the work then ran unserialised, so
      // the caller must not keep its result.
      try {
        await client.query('COMMIT')
      } catch (err) {
        broken = true
        throw new StoreUnavailableError(err)
      }
      return out
    } catch (err) {
      if (!broken) await client.query('ROLLBACK').catch(() => (broken = true))
      throw err
    } finally {
      client.release(broken)
    }
  }

  close(): Promise<void> {
    return this.#pool.ended ? Promise.resolve() : this.#pool.end()
  }
}
