// "A refused attempt changes nothing in the store" (issue 14), and admit.ts: "A token minted for a
// connection that then does not enter the pool is revoked at once". For identity v2 the undo is
// only half done: the minted token is revoked, but the rest of the same transaction stays
// committed. A renewal that does not reach the pool leaves the presented token in grace (it dies
// 10 minutes later although the provider never received a successor, so an agent that comes back
// after the grace needs a recovery it should not have needed).
import { sql } from 'kysely'
import t from 'tap'
import { ManualClock } from '../../src/clock.js'
import type { Database } from '../../src/db/database.js'
import { generateIdentityKey, keyJoin, type IdentityKeyPair } from '../helpers/key-client.js'
import { ProviderClient } from '../helpers/provider-client.js'
import { startTestService, waitFor, type TestService } from '../helpers/service.js'

const DAY = 86_400_000

async function tokens(db: Database): Promise<unknown> {
  const r = await sql`SELECT id, revoked_at, expires_at, grace_until FROM provider_tokens ORDER BY id`.execute(db.kysely)
  return JSON.parse(JSON.stringify(r.rows))
}

async function gone(s: TestService, client: ProviderClient): Promise<void> {
  await client.close()
  await waitFor(async () => (await s.poolz()).summary.total === 0, 'session removal')
}

async function enrolled(s: TestService, id: string, key: IdentityKeyPair): Promise<string> {
  const e = await keyJoin(s.wsUrl, id, key, { intent: 'enroll' })
  if (e.ack === undefined) throw new Error(`enroll refused: ${JSON.stringify(e.close)}`)
  await gone(s, e.client)
  return e.ack.assigned_provider_token as string
}

/** The server side of every provider socket dies (network loss, agent killed). */
function dropAll(s: TestService): void {
  for (const ws of (s.svc as unknown as { wss: { clients: Set<{ terminate(): void }> } }).wss.clients) ws.terminate()
}

/** Makes the next call of identities[method] lose its connection right after the store step commits. */
function abandonAfter(s: TestService, method: 'connect'): void {
  const ids = s.svc.ctx.identities as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>
  const orig = ids[method]!.bind(ids)
  ids[method] = async (...a: unknown[]) => {
    ids[method] = orig
    const r = await orig(...a)
    dropAll(s)
    await new Promise((res) => setTimeout(res, 200))
    return r
  }
}

t.test('a renewal that never reaches the pool leaves the presented token in grace', async (t) => {
  const clock = new ManualClock(Date.now())
  const s = await startTestService(t, { clock })
  const key = generateIdentityKey()
  const token = await enrolled(s, 'mac-1', key)
  clock.advance(16 * DAY) // past half the TTL: the next admission renews
  const before = await tokens(s.db)

  abandonAfter(s, 'connect')
  const out = await keyJoin(s.wsUrl, 'mac-1', key, { intent: 'connect', token })
  t.notOk(out.ack, 'the connection was abandoned before hello_ack')
  await waitFor(() => s.logs.events('admission.abandoned').length === 1, 'abandoned')
  const active = async () => ((await tokens(s.db)) as Array<{ revoked_at: string | null }>).filter((r) => r.revoked_at === null)
  t.same(await active(), before, 'the presented token is as it was: no grace for a token whose successor nobody received, and no live successor')

  // The consequence: 11 minutes later the provider's only token is dead.
  clock.advance(11 * 60_000)
  const again = await keyJoin(s.wsUrl, 'mac-1', key, { intent: 'connect', token })
  t.equal(again.ack?.auth_state, 'key_proven', `the provider's saved token still works (got ${JSON.stringify(again.close)})`)
})
