// The agent's key_state correction (provider-agent.ts retryAtOnce, agent-session.ts onChallenge):
// `switches` allows two corrections and is reset only by a key_proven admission, but the session
// closes on every key_state mismatch whatever the count. Once two corrections were spent without
// an admission, every later connection closes itself (1000 'intent_switch') before signing
// anything: the agent never tries its key again, and since a self-inflicted 1000 is "transient"
// it reconnects on the short backoff forever instead of the long one of a refused credential.
import t from 'tap'
import { generateIdentityKey, keyJoin } from '../helpers/key-client.js'
import { TEST_BACKOFF, agentConfig, startAgent, startMock, stateDir } from '../helpers/agent.js'
import { startTestService, waitFor } from '../helpers/service.js'

t.test('an agent whose id is pinned by another key keeps the long backoff and keeps proving', async (t) => {
  const svc = await startTestService(t)
  // The id is pinned by another machine (or by this machine's key file before it was lost).
  const other = await keyJoin(svc.wsUrl, 'mac-1', generateIdentityKey(), { intent: 'enroll' })
  t.equal(other.ack?.auth_state, 'key_proven')
  await other.client.close()

  const mock = await startMock(t)
  const dir = await stateDir(t)
  // A short "long" backoff so that the test sees several rounds.
  const backoff = { ...TEST_BACKOFF, lockoutMinMs: 100, lockoutMaxMs: 150 }
  const a = await startAgent(t, agentConfig({ coordinatorUrl: svc.wsUrl, backendUrl: mock.url, stateDir: dir, providerId: 'mac-1' }), {
    protocol: 'v2',
    backoff,
  })
  await waitFor(() => a.backoffs.length >= 6, 'six reconnects', 10_000)
  const kinds = a.backoffs.map((b) => `${b.kind}:${b.code}`)
  t.same(
    kinds.filter((k) => k !== 'token_refused:4005'),
    [],
    `every round is a refused recovery on the long backoff, never a self-inflicted transient close (got ${kinds.join(', ')})`,
  )
  const attempts = svc.logs.events('admission.key_mismatch').length
  t.ok(attempts >= 5, `the agent keeps proving its key (${attempts} recoveries seen by the coordinator)`)
})
