import { sql } from 'kysely'
import type { Database } from '../db/database.js'
import { storeCall } from '../db/store-call.js'

/** One bucket to take a token from: its key and its rule, as plain numbers. */
export interface BucketTake {
  key: string
  burst: number
  /** Tokens per millisecond. */
  perMs: number
  /** Give a token only while the bucket is full (the newcomer path, limits/mint-limiter.ts). */
  fullOnly?: boolean
}

/** Taken from every bucket (`waitMs` 0), or from none: then the wait until all could give one, and the bucket that waits longest. */
export type TakeResult = { waitMs: 0 } | { waitMs: number; bucket: string }

/** Time kept back from the store timeout for the answer's way back: a take still running then is cancelled by the database. */
const MARGIN_MS = 200

/**
 * The shared token buckets in PostgreSQL (sql/0004_rate_buckets.sql). A take is one statement,
 * all buckets or none, so a limit is exact across restarts and across the nodes of a cluster.
 * Errors (and a hung store, after timeoutMs) throw: the caller fails closed.
 *
 * A take the caller gave up on must not spend tokens later (a refused admission would use up
 * its address's budget): the statement is sent only if a connection came in time, and carries
 * what is left of the timeout, past which the database refuses to write it.
 */
export class RateBucketStore {
  constructor(
    private readonly db: Database,
    private readonly timeoutMs: number,
  ) {}

  async take(buckets: readonly BucketTake[], now: number): Promise<TakeResult> {
    const keys = buckets.map((b) => b.key)
    const bursts = buckets.map((b) => b.burst)
    const rates = buckets.map((b) => b.perMs)
    const fullOnly = buckets.map((b) => b.fullOnly === true)
    const started = performance.now()
    const result = await storeCall(this.timeoutMs, () =>
      this.db.kysely.connection().execute(async (conn) => {
        const budgetMs = Math.floor(this.timeoutMs - MARGIN_MS - (performance.now() - started))
        if (budgetMs <= 0) throw new Error('no database connection within the store timeout')
        return sql<{ wait_ms: number; bucket: string | null }>`
          SELECT wait_ms, bucket FROM take_rate_tokens(${keys}::text[], ${bursts}::float8[], ${rates}::float8[], ${fullOnly}::bool[], ${Math.floor(now)}::bigint, ${budgetMs}::int)
        `.execute(conn)
      }),
    )
    const row = result.rows[0]
    if (row === undefined) throw new Error('take_rate_tokens returned no row')
    const waitMs = Number(row.wait_ms)
    return waitMs > 0 && row.bucket !== null ? { waitMs, bucket: row.bucket } : { waitMs: 0 }
  }

  /** Gives one token back to each bucket (a refund), never above its burst. */
  async give(buckets: readonly BucketTake[], now: number): Promise<void> {
    const keys = buckets.map((b) => b.key)
    const bursts = buckets.map((b) => b.burst)
    const rates = buckets.map((b) => b.perMs)
    await storeCall(this.timeoutMs, () =>
      sql`
        UPDATE rate_buckets r
        SET level = least(v.burst, r.level + greatest(0, ${Math.floor(now)}::bigint - r.updated_ms) * v.per_ms + 1),
            updated_ms = greatest(r.updated_ms, ${Math.floor(now)}::bigint)
        FROM unnest(${keys}::text[], ${bursts}::float8[], ${rates}::float8[]) AS v(bucket, burst, per_ms)
        WHERE r.bucket = v.bucket
      `.execute(this.db.kysely),
    )
  }

  /**
   * Deletes buckets untouched since `before`: every rule refills within a day, so they are full
   * and equal to absent ones. Rows a take holds are skipped (SKIP LOCKED), so a prune never waits
   * on a take nor deadlocks with one.
   */
  async prune(before: number): Promise<number> {
    const result = await storeCall(this.timeoutMs, () =>
      sql`DELETE FROM rate_buckets WHERE bucket IN (SELECT bucket FROM rate_buckets WHERE updated_ms < ${Math.floor(before)}::bigint FOR UPDATE SKIP LOCKED)`.execute(
        this.db.kysely,
      ),
    )
    return Number(result.numAffectedRows ?? 0)
  }
}
