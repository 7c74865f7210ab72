// The token file holds a credential: these are the attacks and accidents it must survive, on a
// real file system.
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { ensureStateDir, readStateFile, serializeTokenState, tokenStatePath, tokenStateValidator, writeStateFile } from '../../src/state-file.js'

const UID = process.getuid!()
const URL_A = 'wss://a.example/ws/provider'
const TOKEN = 'ab'.repeat(32)

async function tmp(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'poolcoord-state-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

const load = (path: string, uid = UID) => readStateFile(path, uid, tokenStateValidator(URL_A, 'p1'))
const content = serializeTokenState({ coordinatorUrl: URL_A, providerId: 'p1', token: TOKEN }, new Date(0))

t.test('keyed by URL and id: no two coordinators or identities share a file', async (t) => {
  const paths = new Set([tokenStatePath('/s', URL_A, 'p1'), tokenStatePath('/s', 'wss://b.example/ws/provider', 'p1'), tokenStatePath('/s', URL_A, 'p2')])
  t.equal(paths.size, 3)
  t.notMatch([...paths].join(), /example|p1/, 'the name reveals neither the URL nor the id')
})

t.test('write: mode 0600, round trip, no temp files left', async (t) => {
  const dir = await tmp(t)
  const path = tokenStatePath(dir, URL_A, 'p1')
  await writeStateFile(path, content)
  t.equal((await stat(path)).mode & 0o777, 0o600)
  t.same(await load(path), { kind: 'ok', value: { coordinatorUrl: URL_A, providerId: 'p1', token: TOKEN } })
  await writeStateFile(path, content)
  t.same(await readdir(dir), [path.slice(dir.length + 1)], 'only the state file itself')
})

t.test('a symlink planted at the path is replaced, never written through', async (t) => {
  const dir = await tmp(t)
  const victim = join(dir, 'victim')
  await writeFile(victim, 'precious\n')
  const path = tokenStatePath(dir, URL_A, 'p1')
  await symlink(victim, path)
  await writeStateFile(path, content)
  t.equal(await readFile(victim, 'utf8'), 'precious\n', 'the link target is untouched')
  t.ok((await lstat(path)).isFile(), 'the path is now a regular file')
  t.equal((await load(path)).kind, 'ok')
})

t.test('a symlinked state file is refused on load, and left alone', async (t) => {
  const dir = await tmp(t)
  const elsewhere = join(dir, 'elsewhere.json')
  await writeFile(elsewhere, content, { mode: 0o600 })
  const path = tokenStatePath(dir, URL_A, 'p1')
  await symlink(elsewhere, path)
  const r = await load(path)
  t.equal(r.kind, 'refused')
  t.match(r.kind === 'refused' && r.message, /symbolic link.*rm /)
  t.ok((await lstat(path)).isSymbolicLink(), 'not removed: the operator decides')
})

t.test('a file owned by another user is refused', async (t) => {
  const dir = await tmp(t)
  const path = tokenStatePath(dir, URL_A, 'p1')
  await writeStateFile(path, content)
  const r = await load(path, UID + 1)
  t.equal(r.kind, 'refused')
  t.match(r.kind === 'refused' && r.message, new RegExp(`owned by uid ${UID}, not by this user \\(uid ${UID + 1}\\)`))
})

t.test('a file others can write, or read, is refused', async (t) => {
  const modes: Array<[number, RegExp]> = [
    [0o666, /writable by other users.*chmod 600/],
    [0o620, /writable by other users/],
    [0o644, /readable by other users, so its token may have been copied.*revoke/],
    [0o640, /readable by other users/],
  ]
  for (const [mode, why] of modes) {
    const dir = await tmp(t)
    const path = tokenStatePath(dir, URL_A, 'p1')
    await writeStateFile(path, content)
    await chmod(path, mode)
    const r = await load(path)
    t.equal(r.kind, 'refused', `mode ${mode.toString(8)}`)
    t.match(r.kind === 'refused' && r.message, why)
  }
})

t.test('corrupt files are moved aside, with the reason', async (t) => {
  const dir = await tmp(t)
  const path = tokenStatePath(dir, URL_A, 'p1')
  const bad: Array<[string, RegExp]> = [
    ['{"version":1,"coordinator_url":', /not valid JSON/],
    ['[]', /not a version-1 token file/],
    [JSON.stringify({ version: 1, coordinator_url: 'wss://other/ws/provider', provider_id: 'p1', token: TOKEN }), /another coordinator URL/],
    [JSON.stringify({ version: 1, coordinator_url: URL_A, provider_id: 'p1', token: 'short' }), /no well-formed token/],
  ]
  for (const [text, why] of bad) {
    await writeFile(path, text, { mode: 0o600 })
    const r = await load(path)
    t.equal(r.kind, 'corrupt')
    if (r.kind !== 'corrupt') continue
    t.match(r.message, why)
    t.equal(await readFile(r.movedTo!, 'utf8'), text, 'kept for inspection')
    t.equal((await load(path)).kind, 'missing', 'and gone from the path')
  }
})

t.test('a missing file is just missing', async (t) => {
  const dir = await tmp(t)
  t.same(await load(join(dir, 'nothing.json')), { kind: 'missing' })
})

t.test('state directory checks', async (t) => {
  const dir = await tmp(t)
  const fresh = join(dir, 'a', 'b')
  await ensureStateDir(fresh, UID)
  t.equal((await stat(fresh)).mode & 0o777, 0o700, 'created private')
  await t.rejects(ensureStateDir(fresh, UID + 1), /owned by uid/)
  const open = join(dir, 'open')
  await mkdir(open, { mode: 0o777 })
  await chmod(open, 0o777)
  await t.rejects(ensureStateDir(open, UID), /writable by other users; run: chmod 700/)
  const link = join(dir, 'link')
  await symlink(fresh, link)
  await t.rejects(ensureStateDir(link, UID), /symbolic link/)
})

t.test('an unwritable directory makes the write fail, not half-succeed', async (t) => {
  const dir = await tmp(t)
  const path = join(dir, 'missing-subdir', 'token.json')
  await t.rejects(writeStateFile(path, content), { code: 'ENOENT' })
})
