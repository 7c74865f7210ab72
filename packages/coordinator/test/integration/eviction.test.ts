import t from 'tap'
import { TokenStore } from '../../src/tokens/token-store.js'
import { join, type ProviderClient } from '../helpers/provider-client.js'
import { startTestService, waitFor, type TestService } from '../helpers/service.js'

/** A provider that has proven its token and is serving: the victim of every attack below. */
async function provenVictim(s: TestService, id: string): Promise<{ token: string; client: ProviderClient; assignedId: string }> {
  const first = await join(s.wsUrl, id)
  const token = first.ack?.assigned_provider_token as string
  await first.client.close()
  await waitFor(async () => (await s.poolz()).summary.total === 0, 'first session removal')
  const proven = await join(s.wsUrl, id, { token })
  if (proven.ack?.auth_state !== 'bearer_validated') throw new Error('victim did not validate')
  return { token, client: proven.client, assignedId: proven.ack.assigned_id }
}

async function victimRow(s: TestService, id: string) {
  return (await s.poolz()).pool.find((r) => r.provider_id === id)
}

t.test('attack: a tokenless claim does not displace a routable bearer session', async (t) => {
  const s = await startTestService(t)
  const victim = await provenVictim(s, 'victim')
  const attack = await join(s.wsUrl, 'victim')
  t.same(attack.close, { code: 4005, reason: 'invalid_token' })
  const row = await victimRow(s, 'victim')
  t.equal(row?.assigned_id, victim.assignedId, 'the victim keeps its slot')
  t.equal(row?.routing_eligible, true)
  t.equal(victim.client.ws.readyState, victim.client.ws.OPEN, "the victim's socket is untouched")
})

t.test('attack: after the victim token is revoked, a fresh mint still cannot take a serving bearer session', async (t) => {
  const s = await startTestService(t)
  const store = new TokenStore(s.db)
  const victim = await provenVictim(s, 'victim')
  await store.revokeByPrefix(victim.token.slice(0, 12)) // e.g. an operator rotating the token
  const attack = await join(s.wsUrl, 'victim')
  t.same(attack.close, { code: 4005, reason: 'invalid_token' }, 'refused by the registry (bearer_downgrade)')
  t.equal((await victimRow(s, 'victim'))?.assigned_id, victim.assignedId)
  t.equal(s.logs.events('admission.registration_refused')[0]?.reason, 'bearer_downgrade')
  t.equal((await store.list({ activeOnly: true })).length, 0, 'the token minted for the refused attacker was revoked')
})

t.test('attack: a quarantined duplicate does not displace a live self-minted session', async (t) => {
  const s = await startTestService(t)
  const victim = await join(s.wsUrl, 'fresh')
  const token = victim.ack?.assigned_provider_token as string
  const attack = await join(s.wsUrl, 'fresh')
  t.same(attack.close, { code: 4005, reason: 'invalid_token' })
  t.equal(s.logs.events('admission.duplicate_quarantined').length, 1, 'the unique index turned it into a duplicate')
  t.equal(s.logs.events('admission.self_heal').length, 0, "the victim's unproven token was not healed away")
  const row = await victimRow(s, 'fresh')
  t.equal(row?.assigned_id, victim.ack?.assigned_id)
  t.equal(row?.routing_eligible, true)
  await victim.client.close()
  t.equal((await join(s.wsUrl, 'fresh', { token })).ack?.auth_state, 'bearer_validated', "the victim's token still validates")
})

t.test('a bearer reconnect replaces a half-open old socket, and the stale close leaves it routable', async (t) => {
  const s = await startTestService(t)
  const old = await provenVictim(s, 'laptop')
  // Half-open: the old peer stops reading, as after a NAT drop.
  ;(old.client.ws as unknown as { _socket: { pause(): void } })._socket.pause()
  const fresh = await join(s.wsUrl, 'laptop', { token: old.token })
  t.equal(fresh.ack?.auth_state, 'bearer_validated')
  let row = await victimRow(s, 'laptop')
  t.equal(row?.assigned_id, fresh.ack?.assigned_id, 'the new session holds the slot')

  old.client.ws.terminate()
  await waitFor(() => s.logs.events('provider.disconnected').some((e) => e.assigned_id === old.assignedId), "the server processing the old socket's close")
  const closeLog = s.logs.events('provider.disconnected').find((e) => e.assigned_id === old.assignedId)
  t.equal(closeLog?.removed, false, 'the stale close removed nothing')
  row = await victimRow(s, 'laptop')
  t.equal(row?.assigned_id, fresh.ack?.assigned_id)
  t.equal(row?.routing_eligible, true, 'the new session is still routable')
})

t.test('a replaced socket is told 4006 replaced, and its close does not touch the new session', async (t) => {
  const s = await startTestService(t)
  const old = await provenVictim(s, 'desk')
  const fresh = await join(s.wsUrl, 'desk', { token: old.token })
  t.same(await old.client.closed, { code: 4006, reason: 'replaced' })
  await waitFor(() => s.logs.events('provider.disconnected').some((e) => e.assigned_id === old.assignedId), 'old close processed')
  const row = await victimRow(s, 'desk')
  t.equal(row?.assigned_id, fresh.ack?.assigned_id)
  t.equal(row?.routing_eligible, true)
})
