import { sql } from 'kysely'
import t from 'tap'
import { ManualClock } from '../../src/clock.js'
import { OPERATOR_KEY, startTestService, waitFor, type TestService } from '../helpers/service.js'
import { generateIdentityKey, keyJoin } from '../helpers/key-client.js'
import { join } from '../helpers/provider-client.js'

/** Revocation bites (issue 15): revoking a token closes the session it admitted at once, not at the provider's next reconnect. */
const KICKED = { code: 4007, reason: 'kicked' }

async function admin(s: TestService, path: string, body: unknown): Promise<Record<string, unknown>> {
  const res = await fetch(`${s.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${OPERATOR_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
  return (await res.json()) as Record<string, unknown>
}

t.test('revoke-token closes the session its token admitted, within a second, and it is gone from routing', async (t) => {
  const s = await startTestService(t)
  const minted = await join(s.wsUrl, 'leaky')
  const token = minted.ack?.assigned_provider_token as string
  await minted.client.close()
  await waitFor(async () => (await s.poolz()).summary.total === 0, 'gone')
  const p = await join(s.wsUrl, 'leaky', { token })
  t.equal(p.ack?.auth_state, 'bearer_validated')
  const other = await join(s.wsUrl, 'bystander')
  const started = performance.now()
  t.match(await admin(s, `/admin/tokens/${token.slice(0, 12)}/revoke`, {}), { provider_id: 'leaky', revoked: true, kicked: true })
  t.same(await p.client.closed, KICKED)
  t.ok(performance.now() - started < 1000, `closed ${Math.round(performance.now() - started)} ms after the request`)
  t.same(
    (await s.poolz()).pool.map((r) => r.provider_id),
    ['bystander'],
    'only the revoked session left; another provider is untouched',
  )
  t.equal(other.client.ws.readyState, other.client.ws.OPEN)
})

t.test('revoking a token in its grace period leaves the session that runs on its successor alone', async (t) => {
  const clock = new ManualClock(Date.now())
  const s = await startTestService(t, { clock })
  const key = generateIdentityKey()
  const e = await keyJoin(s.wsUrl, 'mac-1', key, { intent: 'enroll' })
  const first = e.ack?.assigned_provider_token as string
  await e.client.close()
  await waitFor(async () => (await s.poolz()).summary.total === 0, 'gone')
  clock.advance(16 * 86_400_000)
  const renewed = await keyJoin(s.wsUrl, 'mac-1', key, { intent: 'connect', token: first })
  const second = renewed.ack?.assigned_provider_token as string
  t.match(second, /^[0-9a-f]{64}$/, 'renewed: the session now runs on the successor')
  t.equal((await s.poolz()).pool[0]?.token_prefix, second.slice(0, 12))
  t.match(await admin(s, `/admin/tokens/${first.slice(0, 12)}/revoke`, {}), { revoked: true, kicked: false })
  t.equal(renewed.client.ws.readyState, renewed.client.ws.OPEN, 'still connected')
  t.match(await admin(s, `/admin/tokens/${second.slice(0, 12)}/revoke`, {}), { revoked: true, kicked: true })
  t.same(await renewed.client.closed, KICKED, 'revoking the token it runs on closes it')
})

t.test('prune-tokens --apply closes a self-minted session whose unproven token it revoked', async (t) => {
  const s = await startTestService(t)
  const p = await join(s.wsUrl, 'never-reconnected')
  t.equal(p.ack?.auth_state, 'self_minted')
  await sql`UPDATE provider_tokens SET created_at = now() - interval '2 days'`.execute(s.db.kysely)
  const pruned = await admin(s, '/admin/tokens/prune', { older_than_s: 86_400, apply: true })
  t.match(pruned, { applied: true, tokens: [{ provider_id: 'never-reconnected' }] })
  t.same(await p.client.closed, KICKED)
})
