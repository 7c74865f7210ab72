import t from 'tap'
import { generateIdentityKey, keyJoin } from '../helpers/key-client.js'
import { ProviderClient, join } from '../helpers/provider-client.js'
import { startTestService, waitFor, type TestService } from '../helpers/service.js'

const REFUSED = { code: 4005, reason: 'invalid_token' }

async function gone(s: TestService, client: ProviderClient): Promise<void> {
  await client.close()
  await waitFor(async () => (await s.poolz()).summary.total === 0, 'session removal')
}

/**
 * Row 8 of the v1 admission table: a v1 bearer on a key-pinned id is refused. The pin is read by
 * the upgrade's validate-and-mark statement, up to the hello deadline (10 s) before the hello is
 * admitted, and decideV1 never looks again. A thief holding the stolen bearer keeps a v1 upgrade
 * pending while the owner pins its key in place; the thief's hello is then admitted as
 * bearer_validated on a key-pinned id.
 */
t.test('attack: a v1 bearer upgraded before the owner pins in place is still admitted after the pin', async (t) => {
  const s = await startTestService(t)
  const v1 = await join(s.wsUrl, 'mac-1')
  const token = v1.ack?.assigned_provider_token as string
  t.match(token, /^[0-9a-f]{64}$/)
  await gone(s, v1.client)

  // The thief upgrades with the stolen bearer (pinned=false at this instant) and waits.
  const thief = await ProviderClient.connect(s.wsUrl, { token })

  // The owner upgrades its agent to v2 and pins its key in place with the same bearer.
  const owner = await keyJoin(s.wsUrl, 'mac-1', generateIdentityKey(), { intent: 'enroll', token })
  t.equal(owner.ack?.auth_state, 'key_proven', 'the owner pinned its key in place')
  await gone(s, owner.client) // e.g. the agent restarts

  t.same((await join(s.wsUrl, 'mac-1', { token })).close, REFUSED, 'a fresh v1 bearer is refused (row 8)')

  thief.hello('mac-1')
  const out = await thief.outcome()
  t.same(out.close, REFUSED, 'the pending v1 bearer must be refused too: the id is key-pinned now')
  t.notOk(out.ack, `no admission on a pinned id without the key (got ${out.ack?.auth_state})`)
  if (out.ack) await thief.close()
})
