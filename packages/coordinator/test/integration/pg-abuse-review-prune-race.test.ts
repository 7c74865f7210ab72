import t from 'tap'
import { sql } from 'kysely'
import { RateBucketStore } from '../../src/limits/rate-bucket-store.js'
import { createPostgresTestDb } from '../helpers/db.js'

// Regression tests for two races a review found in an earlier take_rate_tokens. Review of take_rate_tokens (sql/0004_rate_buckets.sql) against the prune that MintLimiter runs
// every 10 minutes (RateBucketStore.prune: DELETE of rows untouched for a day). The function's
// INSERT … ON CONFLICT DO NOTHING takes no lock on a row that exists, so a prune can delete it
// before the following SELECT … FOR UPDATE, which then silently locks nothing. The loop reads
// NULL, least(burst, NULL) is the burst, the take is granted and the UPDATE touches no row: a
// token taken and never recorded. And the prune's DELETE locks rows in its own order (physical
// or by updated_ms), not the key order the function relies on, so the two can deadlock; the take
// is then the one PostgreSQL aborts, and the admission fails closed (4005).
//
// The races are widened with test-only triggers in the test's own schema (a pause at a chosen
// point); src/ and sql/ are untouched.

const DAY = 86_400_000

t.test('a take racing a prune is granted without being recorded: a burst-1 bucket grants twice', async (t) => {
  const db = await createPostgresTestDb(t)
  const store = new RateBucketStore(db, 10_000)
  const rule = [{ key: 'mint:a:198.51.100.7', burst: 1, perMs: 1 / 3_600_000 }]
  const t0 = Date.now() - 3 * DAY
  t.same(await store.take(rule, t0), { waitMs: 0 }, 'a first take, three days ago')
  // Pause every take for 1 s between its INSERT and its FOR UPDATE, while review_pause has a row.
  await sql`CREATE TABLE review_pause (x int)`.execute(db.kysely)
  await sql
    .raw(
      `CREATE FUNCTION review_pause_fn() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN IF EXISTS (SELECT 1 FROM review_pause) THEN PERFORM pg_sleep(1); END IF; RETURN NULL; END $$`,
    )
    .execute(db.kysely)
  await sql.raw(`CREATE TRIGGER review_pause_t AFTER INSERT ON rate_buckets FOR EACH STATEMENT EXECUTE FUNCTION review_pause_fn()`).execute(db.kysely)
  await sql`INSERT INTO review_pause VALUES (1)`.execute(db.kysely)

  const now = Date.now()
  const racing = store.take(rule, now)
  await new Promise((r) => setTimeout(r, 300))
  t.equal(await store.prune(now - DAY), 0, 'the prune skips the day-old row that the take has locked, and does not wait for it')
  t.same(await racing, { waitMs: 0 }, 'the racing take is granted (right: the bucket was full)')
  await sql`DELETE FROM review_pause`.execute(db.kysely)

  const second = await store.take(rule, now)
  t.not(second.waitMs, 0, `a second take at the same instant from a bucket of burst 1 is refused (got ${JSON.stringify(second)})`)
})

t.test('a prune and a take deadlock, and PostgreSQL aborts the take: a limiter error for an admission', async (t) => {
  const db = await createPostgresTestDb(t)
  const store = new RateBucketStore(db, 10_000)
  const a = 'mint:a:198.51.100.7'
  const p = 'mint:p:198.51.100.0/24'
  const old = Date.now() - 2 * DAY
  // Both rows a day old, the prefix row older, so that the prune's DELETE reaches it first.
  await sql`INSERT INTO rate_buckets (bucket, level, updated_ms) VALUES (${p}, 40, ${old - 1000}), (${a}, 10, ${old})`.execute(db.kysely)
  // Pause the prune for 1 s right after it has locked the prefix row (a BEFORE DELETE row trigger
  // runs with the row locked): as a DELETE over many rows would, on a large table.
  await sql
    .raw(
      `CREATE FUNCTION review_slow_delete() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN IF OLD.bucket LIKE 'mint:p:%' THEN PERFORM pg_sleep(1); END IF; RETURN OLD; END $$`,
    )
    .execute(db.kysely)
  await sql.raw(`CREATE TRIGGER review_slow_delete_t BEFORE DELETE ON rate_buckets FOR EACH ROW EXECUTE FUNCTION review_slow_delete()`).execute(db.kysely)

  const now = Date.now()
  const prune = store.prune(now - DAY).then(
    (n) => ({ ok: true as const, n }),
    (err: unknown) => ({ ok: false as const, err: String((err as { cause?: unknown }).cause ?? err) }),
  )
  await new Promise((r) => setTimeout(r, 300))
  // An address returning after a day: its address and prefix buckets, locked in key order (a, then p).
  const take = await store
    .take(
      [
        { key: a, burst: 10, perMs: 10 / 3_600_000 },
        { key: p, burst: 40, perMs: 40 / 3_600_000 },
      ],
      now,
    )
    .then(
      (r) => ({ ok: true as const, r }),
      (err: unknown) => ({ ok: false as const, err: String((err as { cause?: unknown }).cause ?? err) }),
    )
  const pruned = await prune
  t.comment(`take: ${JSON.stringify(take)}; prune: ${JSON.stringify(pruned)}`)
  t.ok(take.ok, 'the take does not fail because a prune ran at the same time')
  t.ok(pruned.ok, 'and neither does the prune')
})
