// The agent's credential across restarts, and the attacks and accidents its state file must
// survive (specs/protocol.md §2.2; the agent's part of docs/operations.md §4).
import { lstat, mkdir, readFile, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import t, { type Test } from 'tap'
import { setupAgent } from '@poolcoord/provider-agent/agent-setup'
import { defaultBackoff } from '@poolcoord/provider-agent/reconnect-policy'
import { ensureStateDir, tokenStatePath } from '@poolcoord/provider-agent/state-file'
import { TEST_BACKOFF, agentConfig, startAgent, startMock, stateDir } from '../helpers/agent.js'
import { captureLogs } from '../helpers/logs.js'
import { OPERATOR_KEY, startTestService, waitFor } from '../helpers/service.js'

t.test('a restarted agent reconnects as bearer_validated with its saved token, kept at mode 0600', async (t) => {
  const svc = await startTestService(t)
  const mock = await startMock(t)
  const dir = await stateDir(t)
  const config = agentConfig({ coordinatorUrl: svc.wsUrl, backendUrl: mock.url, stateDir: dir })
  const first = await startAgent(t, config)
  t.same(await first.admitted(1), { authState: 'self_minted', assignedId: first.admissions[0]!.assignedId, withToken: false })
  const minted = first.agent.session!
  const swapped = await minted.closed
  t.equal(swapped.code, 4006, 'the minted socket ended only when the coordinator replaced it: no gap')
  t.same(await first.admitted(2), { authState: 'bearer_validated', assignedId: first.admissions[1]!.assignedId, withToken: true }, 'proved at once')
  t.same(first.backoffs, [], 'the swap is not a disconnect')
  const providerId = (await svc.poolz()).pool[0]!.provider_id
  const prefix = (await svc.poolz()).pool[0]!.token_prefix
  t.same(await first.stop(), { reason: 'stopped' })
  await waitFor(async () => (await svc.poolz()).pool.length === 0, 'first agent gone')

  const path = tokenStatePath(dir, svc.wsUrl, providerId)
  t.equal((await stat(path)).mode & 0o777, 0o600, 'token file mode 0600')
  t.equal((await stat(dir)).mode & 0o777, 0o700, 'state directory mode 0700')

  const second = await startAgent(t, config)
  t.same(
    await second.admitted(1),
    { authState: 'bearer_validated', assignedId: second.admissions[0]!.assignedId, withToken: true },
    'first connect carries the token',
  )
  const row = (await svc.poolz()).pool[0]!
  t.equal(row.provider_id, providerId, 'same generated id')
  t.equal(row.token_prefix, prefix, 'same token')
  t.notOk(second.logs.text().includes(JSON.parse(await readFile(path, 'utf8')).token as string), 'the token never reaches the agent log')
})

t.test('a symlink planted before the token is saved is replaced, not followed', async (t) => {
  const svc = await startTestService(t)
  const mock = await startMock(t)
  const dir = await stateDir(t)
  const victim = join(dirname(dir), 'victim')
  await writeFile(victim, 'do not overwrite\n')
  const config = agentConfig({ coordinatorUrl: svc.wsUrl, backendUrl: mock.url, stateDir: dir, providerId: 'target' })
  const agent = await setupAgent(config, { log: captureLogs().logger, uid: process.getuid!(), binaryVersion: 'test', backoff: defaultBackoff })
  // The attacker's move, between the agent's start and its first mint.
  const path = tokenStatePath(dir, svc.wsUrl, 'target')
  await symlink(victim, path)
  const saved = new Promise((r) => agent.once('token_saved', r))
  const exit = agent.run()
  t.teardown(async () => (await agent.stop(), await exit))
  await saved
  t.equal(await readFile(victim, 'utf8'), 'do not overwrite\n', 'the link target is untouched')
  t.ok((await lstat(path)).isFile(), 'the link was replaced by the state file')
  t.match(JSON.parse(await readFile(path, 'utf8')), { provider_id: 'target', token: /^[0-9a-f]{64}$/ })
})

t.test('a symlinked or foreign-owned token file is refused at start, with what to do', async (t) => {
  const dir = await stateDir(t)
  await ensureStateDir(dir, process.getuid!())
  const config = agentConfig({ coordinatorUrl: 'ws://127.0.0.1:9/ws/provider', backendUrl: 'http://127.0.0.1:9/v1', stateDir: dir, providerId: 'p' })
  const path = tokenStatePath(dir, config.coordinatorUrl, 'p')
  await symlink('/etc/hostname', path)
  const setup = (uid: number) => setupAgent(config, { log: captureLogs().logger, uid, binaryVersion: 'test' })
  await t.rejects(setup(process.getuid!()), { code: 'AGENT_SETUP', message: /is a symbolic link.*Remove the link/ })
  await t.rejects(setup(process.getuid!() + 1), { code: 'AGENT_SETUP', message: /state directory.*owned by uid/ }, 'a state directory of another user')
})

t.test('a corrupt token file is moved aside and the agent joins afresh', async (t) => {
  const svc = await startTestService(t)
  const mock = await startMock(t)
  const dir = await stateDir(t)
  await ensureStateDir(dir, process.getuid!())
  const path = tokenStatePath(dir, svc.wsUrl, 'fresh')
  await writeFile(path, '{"version":1,"tok', { mode: 0o600 })
  const a = await startAgent(t, agentConfig({ coordinatorUrl: svc.wsUrl, backendUrl: mock.url, stateDir: dir, providerId: 'fresh' }))
  const [corrupt] = a.logs.events('agent.token_file_corrupt')
  t.match(corrupt, { path, msg: /not valid JSON; it was moved to .*corrupt-\d+ and the agent connects without a token.*POOLCOORD_PROVIDER_TOKEN/ })
  t.equal(await readFile(corrupt!.moved_to as string, 'utf8'), '{"version":1,"tok', 'kept for the operator')
  t.equal((await a.admitted(1)).authState, 'self_minted', 'an unproven id: a fresh token')
  t.equal((await a.admitted(2)).authState, 'bearer_validated')
  t.match(JSON.parse(await readFile(path, 'utf8')), { token: /^[0-9a-f]{64}$/ }, 'a good file in its place')
})

/** A coordinator, a mock backend, and an agent whose minted token is saved and proven. */
async function provenAgent(t: Test, providerId: string) {
  const svc = await startTestService(t)
  const mock = await startMock(t)
  const dir = await stateDir(t)
  const config = agentConfig({ coordinatorUrl: svc.wsUrl, backendUrl: mock.url, stateDir: dir, providerId })
  const first = await startAgent(t, config)
  await first.admitted(2)
  return { svc, dir, config, first }
}

t.test('a lost token on a proven id: refused, and told what to do', async (t) => {
  const { svc, dir, config, first } = await provenAgent(t, 'proven')
  await first.stop()
  await writeFile(tokenStatePath(dir, svc.wsUrl, 'proven'), 'garbage', { mode: 0o600 })
  const again = await startAgent(t, config)
  await waitFor(() => again.backoffs.length === 1, 'the first refusal')
  t.match(again.backoffs[0], { kind: 'credential_required', code: 4005 })
  t.ok(again.backoffs[0]!.delayMs >= TEST_BACKOFF.floorMs, 'not an immediate retry')
  t.match(again.logs.events('agent.disconnected')[0]!.msg, /already proven.*coordinator-cli issue-token --provider-id proven/)
})

t.test('an operator-issued token is installed and used (invite-only)', async (t) => {
  const svc = await startTestService(t, { requireProviderTokens: true })
  const mock = await startMock(t)
  const issued = await svc.svc.ctx.tokens.issue('invited', 'Invited Mac', 'operator_issued')
  const dir = await stateDir(t)
  const a = await startAgent(
    t,
    agentConfig({ coordinatorUrl: svc.wsUrl, backendUrl: mock.url, stateDir: dir, providerId: 'invited', importToken: issued.token }),
  )
  t.same((await a.admitted(1)).authState, 'bearer_validated')
  t.match(JSON.parse(await readFile(tokenStatePath(dir, svc.wsUrl, 'invited'), 'utf8')), { token: issued.token }, 'saved for restarts')
})

t.test('a refused token backs off for minutes, not seconds', async (t) => {
  const { svc, first: a } = await provenAgent(t, 'revoked')
  const prefix = (await svc.poolz()).pool[0]!.token_prefix!
  await svc.svc.ctx.tokens.revokeByPrefix(prefix)
  const kick = await fetch(`${svc.url}/admin/providers/revoked/kick`, { method: 'POST', headers: { authorization: `Bearer ${OPERATOR_KEY}` } })
  t.equal(kick.status, 200)
  await waitFor(() => a.backoffs.filter((b) => b.kind === 'token_refused').length === 2, 'two refusals', 10_000)
  const [blip, refused] = a.backoffs.filter((b) => b.kind === 'token_refused')
  t.equal(blip!.code, 4005)
  t.ok(blip!.delayMs < defaultBackoff.lockoutMinMs, 'the first refusal of a token accepted until now is retried soon: it may be a store blip')
  t.equal(refused!.code, 4005)
  t.ok(refused!.delayMs >= defaultBackoff.lockoutMinMs, `the second in a row waits ${refused!.delayMs} ms, at least ${defaultBackoff.lockoutMinMs}`)
  t.match(a.logs.events('agent.disconnected').at(-1)!.msg, /refused this provider's saved token.*issue-token --provider-id revoked.*operations\.md/)
  t.equal(a.admissions.length, 2, 'no further admission attempt got through')
})

t.test('a token that cannot be saved is never presented, so the id stays unproven', async (t) => {
  const svc = await startTestService(t)
  const mock = await startMock(t)
  const dir = await stateDir(t)
  await ensureStateDir(dir, process.getuid!())
  const config = agentConfig({ coordinatorUrl: svc.wsUrl, backendUrl: mock.url, stateDir: dir, providerId: 'unsaved' })
  const blocker = tokenStatePath(dir, svc.wsUrl, 'unsaved')
  // After start-up, a directory appears where the file should go: the rename fails, as on a
  // read-only or full disk (the tests may run as root, which file modes do not stop).
  const a = await startAgent(t, config, { beforeRun: () => mkdir(join(blocker, 'blocker'), { recursive: true }).then(() => {}) })
  t.equal((await a.admitted(1)).authState, 'self_minted')
  await waitFor(() => a.logs.events('agent.token_not_saved').length === 1, 'the save failure is reported')
  t.match(a.logs.events('agent.token_not_saved')[0]!.msg, /will not use it.*Make the state directory writable/)
  t.equal((await svc.poolz()).pool[0]!.auth_state, 'self_minted', 'never proven')
  t.equal(a.admissions.length, 1, 'no bearer connect was made')
  const kick = await fetch(`${svc.url}/admin/providers/unsaved/kick`, { method: 'POST', headers: { authorization: `Bearer ${OPERATOR_KEY}` } })
  t.equal(kick.status, 200)
  t.match(await a.admitted(2), { authState: 'self_minted', withToken: false }, 'its reconnect is tokenless, and self-heals')
  // The second mint's save fails too; only then is the way cleared for the restart.
  await waitFor(() => a.logs.events('agent.token_not_saved').length === 2, 'the second save failure')
  await a.stop()
  await waitFor(async () => (await svc.poolz()).pool.length === 0, 'gone')
  await rm(blocker, { recursive: true })
  const b = await startAgent(t, config)
  t.equal((await b.admitted(1)).authState, 'self_minted', 'a restart self-heals instead of being locked out')
  t.equal((await b.admitted(2)).authState, 'bearer_validated', 'and, able to save now, proves its new token')
  t.same(
    (await readdir(dir)).filter((f) => f.endsWith('.tmp')),
    [],
    'no temp files left behind',
  )
})

t.test('two coordinators on one host keep separate state', async (t) => {
  const one = await startTestService(t)
  const two = await startTestService(t)
  const mock = await startMock(t)
  const dir = await stateDir(t)
  const a = await startAgent(t, agentConfig({ coordinatorUrl: one.wsUrl, backendUrl: mock.url, stateDir: dir, providerId: 'shared-id' }))
  const b = await startAgent(t, agentConfig({ coordinatorUrl: two.wsUrl, backendUrl: mock.url, stateDir: dir, providerId: 'shared-id' }))
  await a.admitted(2)
  await b.admitted(2)
  const fileA = JSON.parse(await readFile(tokenStatePath(dir, one.wsUrl, 'shared-id'), 'utf8')) as { token: string; coordinator_url: string }
  const fileB = JSON.parse(await readFile(tokenStatePath(dir, two.wsUrl, 'shared-id'), 'utf8')) as { token: string; coordinator_url: string }
  t.equal(fileA.coordinator_url, one.wsUrl)
  t.equal(fileB.coordinator_url, two.wsUrl)
  t.not(fileA.token, fileB.token, 'each coordinator minted its own')
  await a.stop()
  await b.stop()
  const a2 = await startAgent(t, agentConfig({ coordinatorUrl: one.wsUrl, backendUrl: mock.url, stateDir: dir, providerId: 'shared-id' }))
  const b2 = await startAgent(t, agentConfig({ coordinatorUrl: two.wsUrl, backendUrl: mock.url, stateDir: dir, providerId: 'shared-id' }))
  t.equal((await a2.admitted(1)).authState, 'bearer_validated', 'first coordinator accepts its token')
  t.equal((await b2.admitted(1)).authState, 'bearer_validated', 'second coordinator accepts its own')
})

t.test('a second instance with the same token takes over; the first exits instead of fighting', async (t) => {
  const { svc, config, first } = await provenAgent(t, 'twin')
  const second = await startAgent(t, config)
  t.equal((await second.admitted(1)).authState, 'bearer_validated')
  t.same(await first.exit, { reason: 'replaced', code: 4006 })
  t.match(first.logs.events('agent.disconnected').at(-1)!.msg, /another instance took over provider id twin.*stop one of them/)
  t.same(first.backoffs, [], 'no reconnect attempt')
  t.equal((await svc.poolz()).pool[0]!.assigned_id, second.admissions[0]!.assignedId)
})
