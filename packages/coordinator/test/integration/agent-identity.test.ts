// The agent's identity v2 (specs/provider-agent.md §3): enrolment, recovery with no operator,
// the retry-once recovery, the fallback to v1, key rotation, the origin check and token renewal.
import { readFile, rm, stat } from 'node:fs/promises'
import t, { type Test } from 'tap'
import { WebSocketServer } from 'ws'
import { rotateKey } from '@poolcoord/provider-agent/agent-setup'
import { identityKeyPath } from '@poolcoord/provider-agent/identity-key-file'
import { tokenStatePath } from '@poolcoord/provider-agent/state-file'
import { Close, encode, helloAck, keyFingerprint, identityKeyFromSeed } from '@poolcoord/protocol'
import { ManualClock } from '../../src/clock.js'
import type { AgentConfig } from '@poolcoord/provider-agent/agent-config'
import { agentConfig, startAgent, startMock, stateDir } from '../helpers/agent.js'
import { captureLogs } from '../helpers/logs.js'
import { startTestService, waitFor, type TestService } from '../helpers/service.js'

const V2 = { protocol: 'v2' as const }

async function keyFile(dir: string, url: string, id: string): Promise<{ private_key: string; next_private_key: string | null; enrolled: boolean }> {
  return JSON.parse(await readFile(identityKeyPath(dir, url, id), 'utf8'))
}

async function savedToken(dir: string, url: string, id: string): Promise<string> {
  return (JSON.parse(await readFile(tokenStatePath(dir, url, id), 'utf8')) as { token: string }).token
}

/** An agent enrolls its key, saves the token it got, and stops: the state a restart starts from. */
async function enrollAndStop(t: Test, svc: TestService, config: AgentConfig): Promise<void> {
  const a = await startAgent(t, config, V2)
  await a.admitted(1)
  await waitFor(async () => a.logs.events('agent.token_saved').length === 1, 'token saved')
  await a.stop()
  await waitFor(async () => (await svc.poolz()).pool.length === 0, 'gone')
}

t.test('a fresh agent enrolls its key, saves the token, and reconnects by bearer + proof', async (t) => {
  const svc = await startTestService(t)
  const mock = await startMock(t)
  const dir = await stateDir(t)
  const config = agentConfig({ coordinatorUrl: svc.wsUrl, backendUrl: mock.url, stateDir: dir, providerId: 'mac-1' })
  const a = await startAgent(t, config, V2)
  t.match(await a.admitted(1), { authState: 'key_proven', withToken: false })
  await waitFor(async () => a.logs.events('agent.token_saved').length === 1, 'token saved')
  t.equal((await stat(identityKeyPath(dir, svc.wsUrl, 'mac-1'))).mode & 0o777, 0o600, 'key file mode 0600')
  const kf = await keyFile(dir, svc.wsUrl, 'mac-1')
  t.equal(kf.enrolled, true)
  const row = (await svc.poolz()).pool[0]!
  t.same(row.identity, { pinned: true, generation: 1, key_fingerprint: keyFingerprint(identityKeyFromSeed(kf.private_key).publicKey) })
  t.equal(a.admissions.length, 1, 'no proving socket for a key-pinned id')
  await a.stop()
  await waitFor(async () => (await svc.poolz()).pool.length === 0, 'gone')
  const b = await startAgent(t, config, V2)
  t.match(await b.admitted(1), { authState: 'key_proven', withToken: true }, 'restart: bearer + proof')
  t.same(b.logs.events('agent.token_saved'), [], 'no new token')
})

t.test('lost token, key kept: the agent recovers by itself', async (t) => {
  const svc = await startTestService(t)
  const mock = await startMock(t)
  const dir = await stateDir(t)
  const config = agentConfig({ coordinatorUrl: svc.wsUrl, backendUrl: mock.url, stateDir: dir, providerId: 'mac-1' })
  await enrollAndStop(t, svc, config)
  const first = await savedToken(dir, svc.wsUrl, 'mac-1')
  await rm(tokenStatePath(dir, svc.wsUrl, 'mac-1'))
  const b = await startAgent(t, config, V2)
  t.match(await b.admitted(1), { authState: 'key_proven', withToken: false })
  await waitFor(async () => b.logs.events('agent.token_saved').length === 1, 'recovered token saved')
  t.not(await savedToken(dir, svc.wsUrl, 'mac-1'), first)
  t.equal(svc.logs.events('admission.key_recovered').length, 1, 'recovered, no operator')
  t.same(b.backoffs, [])
})

t.test('retry-once: a revoked token is recovered at once, with no backoff', async (t) => {
  const svc = await startTestService(t)
  const mock = await startMock(t)
  const dir = await stateDir(t)
  const config = agentConfig({ coordinatorUrl: svc.wsUrl, backendUrl: mock.url, stateDir: dir, providerId: 'mac-1' })
  await enrollAndStop(t, svc, config)
  // The operator revokes the leaked token; the agent restarts with it.
  const [tk] = await svc.svc.ctx.tokens.list({ activeOnly: true })
  await svc.svc.ctx.tokens.revokeByPrefix(tk!.tokenPrefix)
  const b = await startAgent(t, config, V2)
  t.match(await b.admitted(1), { authState: 'key_proven', withToken: false }, 'admitted by recovery')
  t.equal(b.logs.events('agent.recovering').length, 1)
  t.same(b.backoffs, [], 'the retry was at once, not after a backoff')
  await waitFor(async () => b.logs.events('agent.token_saved').length === 1, 'new token saved')
})

t.test('revoke-identity: the retry-once recovery fails and the agent waits the long backoff', async (t) => {
  const svc = await startTestService(t)
  const mock = await startMock(t)
  const dir = await stateDir(t)
  const config = agentConfig({ coordinatorUrl: svc.wsUrl, backendUrl: mock.url, stateDir: dir, providerId: 'mac-1' })
  await enrollAndStop(t, svc, config)
  await svc.svc.ctx.identities.revoke('mac-1')
  const b = await startAgent(t, config, V2)
  await waitFor(() => b.backoffs.length === 1, 'a backoff')
  t.equal(b.logs.events('agent.recovering').length, 1, 'one recovery attempt')
  t.equal(b.backoffs[0]!.kind, 'token_refused')
  t.ok(b.backoffs[0]!.delayMs >= 5 * 60_000, `the long backoff (${b.backoffs[0]!.delayMs} ms)`)
  t.equal(svc.logs.events('admission.identity_revoked').length, 1)
})

t.test('falls back to v1 against a coordinator that does not speak identity v2', async (t) => {
  const mock = await startMock(t)
  for (const variant of ['selects no subprotocol', 'selects it but answers auth_init with 4000'] as const) {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', ...(variant === 'selects no subprotocol' ? { handleProtocols: () => false as const } : {}) })
    await new Promise((r) => wss.once('listening', r))
    const port = (wss.address() as { port: number }).port
    const seen: Array<{ protocol: string; first: string }> = []
    wss.on('connection', (ws) => {
      ws.once('message', (m) => {
        const first = JSON.parse(String(m)) as { type: string }
        seen.push({ protocol: ws.protocol, first: first.type })
        if (first.type !== 'hello') return ws.close(Close.notHello.code, Close.notHello.reason)
        ws.send(encode(helloAck({ assigned_id: 'x', heartbeat_interval_s: 30, auth_state: 'self_minted', assigned_provider_token: 'ab'.repeat(32) })))
      })
    })
    const dir = await stateDir(t)
    const a = await startAgent(
      t,
      agentConfig({ coordinatorUrl: `ws://127.0.0.1:${port}/ws/provider`, backendUrl: mock.url, stateDir: dir, providerId: 'p' }),
      V2,
    )
    t.match(await a.admitted(1), { authState: 'self_minted' }, `${variant}: admitted by v1`)
    t.equal(a.logs.events('agent.v2_unsupported').length, 1)
    t.same(a.backoffs, [], 'fell back at once')
    t.equal(seen.at(-1)?.first, 'hello')
    if (variant !== 'selects no subprotocol') t.same(seen[0], { protocol: 'poolcoord.v2', first: 'auth_init' })
    // The v1 mint is saved and then proven on a second socket: let that finish before tearing down.
    await waitFor(() => a.logs.events('agent.token_saved').length === 1 && a.admissions.length === 2, 'the v1 token saved and proven')
    await a.stop()
    for (const c of wss.clients) c.terminate()
    await new Promise<void>((r) => wss.close(() => r()))
  }
})

t.test('rotate-key then SIGHUP: the next key is announced, confirmed and made current', async (t) => {
  const svc = await startTestService(t)
  const mock = await startMock(t)
  const dir = await stateDir(t)
  const config = agentConfig({ coordinatorUrl: svc.wsUrl, backendUrl: mock.url, stateDir: dir, providerId: 'mac-1' })
  const a = await startAgent(t, config, V2)
  await a.admitted(1)
  await waitFor(async () => a.logs.events('agent.token_saved').length === 1, 'token saved')
  const msg = await rotateKey(config, { log: captureLogs().logger, uid: process.getuid!(), binaryVersion: 'test' })
  t.match(msg, /saved the next identity key/)
  const pending = await keyFile(dir, svc.wsUrl, 'mac-1')
  t.ok(pending.next_private_key, 'the next key is on disk before it is announced')
  t.match(await rotateKey(config, { log: captureLogs().logger, uid: process.getuid!(), binaryVersion: 'test' }), /already waiting/)
  await a.agent.reloadIdentity()
  t.match(await a.admitted(2), { authState: 'key_proven', withToken: true })
  await waitFor(async () => (await keyFile(dir, svc.wsUrl, 'mac-1')).next_private_key === null, 'promoted on disk')
  const kf = await keyFile(dir, svc.wsUrl, 'mac-1')
  t.equal(kf.private_key, pending.next_private_key, 'the next key is current')
  await waitFor(async () => (await svc.poolz()).pool[0]?.identity.generation === 2, 'generation 2 in /poolz')
  t.equal((await svc.poolz()).pool.length, 1, 'one session: the first was replaced')
  t.same(a.backoffs, [])
})

t.test('the agent refuses to sign a challenge for another origin', async (t) => {
  const svc = await startTestService(t, { env: { publicOrigin: 'wss://pool.example.com' } })
  const mock = await startMock(t)
  const dir = await stateDir(t)
  const a = await startAgent(t, agentConfig({ coordinatorUrl: svc.wsUrl, backendUrl: mock.url, stateDir: dir, providerId: 'mac-1' }), V2)
  await waitFor(() => a.backoffs.length >= 1, 'a backoff')
  t.match(a.logs.events('agent.origin_mismatch')[0], { named: 'wss://pool.example.com' })
  t.same(svc.logs.events('admission.proof_invalid'), [], 'nothing was signed or sent')
  t.equal(a.admissions.length, 0)
})

t.test('a renewed token comes in the ack and is saved before it is used', async (t) => {
  const clock = new ManualClock(Date.now())
  const svc = await startTestService(t, { clock })
  const mock = await startMock(t)
  const dir = await stateDir(t)
  const config = agentConfig({ coordinatorUrl: svc.wsUrl, backendUrl: mock.url, stateDir: dir, providerId: 'mac-1' })
  await enrollAndStop(t, svc, config)
  const first = await savedToken(dir, svc.wsUrl, 'mac-1')
  clock.advance(16 * 86_400_000)
  const b = await startAgent(t, config, V2)
  t.match(await b.admitted(1), { authState: 'key_proven', withToken: true })
  await waitFor(async () => b.logs.events('agent.token_saved').length === 1, 'renewed token saved')
  const second = await savedToken(dir, svc.wsUrl, 'mac-1')
  t.not(second, first)
  t.match(svc.logs.events('admission.key_proven')[0], {})
})

t.test('after reset-identity the agent gets back in by itself: refused token, recover, key_state unknown, enroll afresh', async (t) => {
  const svc = await startTestService(t)
  const mock = await startMock(t)
  const dir = await stateDir(t)
  const config = agentConfig({ coordinatorUrl: svc.wsUrl, backendUrl: mock.url, stateDir: dir, providerId: 'mac-1' })
  await enrollAndStop(t, svc, config)
  await svc.svc.ctx.identities.reset('mac-1')
  const b = await startAgent(t, config, V2)
  t.match(await b.admitted(1), { authState: 'key_proven', withToken: false }, 'enrolled afresh')
  t.same(b.backoffs, [], 'all at once, no backoff')
  t.equal(svc.logs.events('admission.key_enrolled').length, 2)
  const kf = await keyFile(dir, svc.wsUrl, 'mac-1')
  t.equal((await svc.poolz()).pool[0]?.identity.key_fingerprint, keyFingerprint(identityKeyFromSeed(kf.private_key).publicKey), 'the same key, pinned again')
})
