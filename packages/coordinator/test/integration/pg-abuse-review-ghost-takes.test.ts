import t from 'tap'
import { sql } from 'kysely'
import { createPostgresTestDb } from '../helpers/db.js'
import { join } from '../helpers/provider-client.js'
import { startTestService } from '../helpers/service.js'

// Review of the limiter's fail-closed path (specs/admission.md §7.2, "Fail closed"): a take that
// times out on the client side is refused (4005 limiter_error), but its statement is still
// queued behind the lock (or in a frozen server's socket) and commits once the store moves
// again. Every attempt refused during a store stall therefore spends a token it never used, and
// when the stall ends the address is refused 4008 for up to an hour for admissions that never
// happened. On PostgreSQL (a private cluster when TEST_DATABASE_URL is unset): PGlite has one connection and no lock waits.

const HOUR = 3_600_000
const FROM = '127.0.0.80'

t.test('a store stall spends the mint budget of the attempts it refused', async (t) => {
  const mint = { mintPerAddress: { burst: 3, periodMs: HOUR }, mintPerPrefix: null, mintGlobal: null, recoveryPerId: null, mintNewcomer: null, healPerId: null }
  const s = await startTestService(t, { db: await createPostgresTestDb(t), limits: { mint, storeTimeoutMs: 1000 } })

  // Something holds the address's bucket row for 2.5 s: here an uncommitted insert of it (full);
  // as well another node's take stuck on a slow link, a lock queue, a frozen server.
  let unblock!: () => void
  const blocked = new Promise<void>((resolve) => (unblock = resolve))
  let holding!: () => void
  const held = new Promise<void>((resolve) => (holding = resolve))
  const tx = s.db.rawTransaction(async (x) => {
    await x.exec(`INSERT INTO rate_buckets (bucket, level, updated_ms) VALUES ('mint:a:${FROM}', 3, ${Date.now()})`)
    holding()
    await blocked
  })
  await held
  setTimeout(unblock, 2500)

  // A lab behind one address tries three first-time providers during the stall: all refused, fail closed.
  const during = await Promise.all([0, 1, 2].map((i) => join(s.wsUrl, `during-${i}`, { localAddress: FROM })))
  t.same(
    during.map((r) => r.close),
    [0, 1, 2].map(() => ({ code: 4005, reason: 'invalid_token' })),
    'each attempt during the stall fails closed (limiter_error)',
  )
  t.equal(s.logs.events('admission.limiter_error').length, 3)
  await tx

  // The stall is over. Nothing was admitted from this address, so its 3 tokens should all be there.
  const level = async () =>
    Number((await sql<{ level: number }>`SELECT level FROM rate_buckets WHERE bucket = ${`mint:a:${FROM}`}`.execute(s.db.kysely)).rows[0]?.level)
  await new Promise((r) => setTimeout(r, 500))
  t.comment(`bucket level after the stall: ${(await level()).toFixed(3)}`)
  const after = await join(s.wsUrl, 'after-stall', { localAddress: FROM })
  t.teardown(() => after.client.ws.terminate())
  t.equal(after.ack?.auth_state, 'self_minted', `the first admission after the stall is not rate limited (got ${JSON.stringify(after.close ?? 'ack')})`)
})
