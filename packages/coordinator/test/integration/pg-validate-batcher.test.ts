import t, { type Test } from 'tap'
import { sql } from 'kysely'
import { hashToken } from '@poolcoord/protocol'
import type { Database } from '../../src/db/database.js'
import { ValidateBatcher } from '../../src/tokens/validate-batcher.js'
import { TokenStore } from '../../src/tokens/token-store.js'
import { createPostgresTestDb } from '../helpers/db.js'

// Validations share statements, one at a time (tokens/validate-batcher.ts). A row that another
// transaction holds (an identity write, a revoke) must hold up only the upgrade of that token:
// not the ones queued behind its statement, and not the others in its batch.

async function setUp(
  t: Test,
  hold = `SELECT 1 FROM provider_tokens WHERE provider_id = 'held' FOR UPDATE`,
): Promise<{ db: Database; store: TokenStore; held: string; others: string[]; release: () => Promise<void> }> {
  const db = await createPostgresTestDb(t)
  const store = new TokenStore(db, { timeoutMs: 10_000 })
  const held = (await store.issue('held', 'held', 'operator_issued')).token
  const others = await Promise.all(['b-0', 'b-1', 'b-2', 'b-3'].map(async (id) => (await store.issue(id, id, 'operator_issued')).token))
  const holder = await db.pool!.connect()
  t.teardown(() => holder.release())
  await holder.query('BEGIN')
  await holder.query(hold)
  return { db, store, held, others, release: async () => void (await holder.query('COMMIT')) }
}

/** The answers, or 'stuck' when they did not come while the row was held (bounded, so that a regression fails instead of hanging). */
function whileHeld<T>(p: Promise<T>): Promise<T | 'stuck'> {
  const bound = new Promise<'stuck'>((resolve) => setTimeout(() => resolve('stuck'), 5000).unref())
  return Promise.race([p, bound])
}

t.test('a statement stuck on a held row does not hold up the validations queued behind it', async (t) => {
  const { store, held, others, release } = await setUp(t)
  let heldSettled = false
  const pending = store.validateAndMarkUsed(held).finally(() => (heldSettled = true))
  // These queue behind the held statement; past the stall time they go on another connection.
  const answers = await whileHeld(Promise.all(others.map((o) => store.validateAndMarkUsed(o))))
  t.not(answers, 'stuck', 'the others answered while the row was held')
  if (answers !== 'stuck')
    t.same(
      answers.map((v) => v?.providerId),
      ['b-0', 'b-1', 'b-2', 'b-3'],
    )
  t.notOk(heldSettled, 'the held one is still waiting for its row')
  await release()
  t.match(await pending, { providerId: 'held' }, 'and validates once the row is free')
})

t.test('a batch that meets a held row does not make the others in it wait', async (t) => {
  const { store, held, others, release } = await setUp(t)
  // b-0 goes alone at once; the held token and b-1..b-3 queue and go together in one batch.
  const first = store.validateAndMarkUsed(others[0]!)
  let heldSettled = false
  const pending = store.validateAndMarkUsed(held).finally(() => (heldSettled = true))
  const rest = Promise.all(others.slice(1).map((o) => store.validateAndMarkUsed(o)))
  const answers = await whileHeld(Promise.all([first, rest]))
  t.not(answers, 'stuck', 'its batch-mates answered while the row was held')
  if (answers !== 'stuck')
    t.same(
      [answers[0], ...answers[1]].map((v) => v?.providerId),
      ['b-0', 'b-1', 'b-2', 'b-3'],
    )
  t.notOk(heldSettled, 'the held one is still waiting for its row')
  t.ok(store.batcher.statements >= 3, 'the batch skipped the held row, which was then checked alone')
  await release()
  t.match(await pending, { providerId: 'held' }, 'and validates once the row is free')
})

t.test('the queue is bounded, and a validation whose caller gave up is never run', async (t) => {
  const { db, held, others, release } = await setUp(t)
  // Stalls never free the slot here, so everything after the held statement queues.
  const batcher = new ValidateBatcher(db, { stallMs: 60_000, timeoutMs: 100, maxQueued: 2 })
  const pending = batcher.validate(hashToken(held), new Date())
  const late = batcher.validate(hashToken(others[0]!), new Date())
  void late.catch(() => undefined)
  const queued = batcher.validate(hashToken(others[1]!), new Date())
  void queued.catch(() => undefined)
  await t.rejects(batcher.validate(hashToken(others[2]!), new Date()), /queue full/, 'a third waiter is refused at once')
  // Both waiters are now older than their callers' timeout when the slot frees.
  await new Promise((resolve) => setTimeout(resolve, 150))
  await release()
  t.match(await pending, { provider_id: 'held' })
  await t.rejects(late, /timed out in the queue/)
  await t.rejects(queued, /timed out in the queue/)
  const marked = await sql<{ provider_id: string }>`SELECT provider_id FROM provider_tokens WHERE last_used_at IS NOT NULL`.execute(db.kysely)
  t.same(
    marked.rows.map((r) => r.provider_id),
    ['held'],
    'the dropped validations marked nothing',
  )
})

t.test('a revoke that commits while the batch runs wins', async (t) => {
  const { db, store, held, others, release } = await setUp(t, `UPDATE provider_tokens SET revoked_at = now() WHERE provider_id = 'held'`)
  const first = store.validateAndMarkUsed(others[0]!)
  const pending = store.validateAndMarkUsed(held)
  const rest = Promise.all(others.slice(1).map((o) => store.validateAndMarkUsed(o)))
  const answers = await whileHeld(Promise.all([first, rest]))
  t.not(answers, 'stuck', 'the batch-mates answered while the revoke was open')
  await release()
  t.equal(await pending, null, 'the revoked token is refused')
  const row = await sql<{ last_used_at: Date | null }>`SELECT last_used_at FROM provider_tokens WHERE provider_id = 'held'`.execute(db.kysely)
  t.equal(row.rows[0]?.last_used_at, null, 'and not marked used')
})
