import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import t from 'tap'
import { childUrls, spawnCoordinator } from '../helpers/child-coordinator.js'
import { OPERATOR_KEY } from '../helpers/service.js'

/*
 * The embedded database survives a power loss as PostgreSQL on a disk does
 * (db/pglite-durability.ts). Watched from outside, in the real coordinator process: strace logs
 * every fsync(2) it makes, with the path of the file (-y).
 *
 * Before that module, PGlite's Node filesystem had no fsync and PostgreSQL ran with fsync off:
 * this test saw no fsync at all, neither of the data directory nor of the WAL at a commit.
 */

const STRACE = '/usr/bin/strace'

/** The paths fsync'd, in order, from strace's log (lines such as `fsync(12</…/pg_wal/0000…1>) = 0`). */
function fsyncedPaths(log: string): string[] {
  if (!existsSync(log)) return []
  return [...readFileSync(log, 'utf8').matchAll(/\bf(?:data)?sync\(\d+<([^>]*)>\) = 0/g)].map((m) => m[1] as string)
}

/** The one process `pid` started (strace's: the coordinator it traces). */
function onlyChildOf(pid: number): number {
  const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).map(Number)
  if (children.length !== 1 || !Number.isInteger(children[0])) throw new Error(`expected one child of ${pid}, found ${children.join(' ')}`)
  return children[0] as number
}

t.test('a commit on the embedded database returns after its WAL reached the disk, and start-up syncs the data directory', async (t) => {
  t.ok(existsSync(STRACE), `strace is installed (${STRACE}; apt-get install strace)`)
  const dir = mkdtempSync(join(tmpdir(), 'poolcoord-durability-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const log = join(dir, 'strace.log')
  const c = spawnCoordinator(t, {}, [STRACE, '-f', '--seccomp-bpf', '-qq', '-y', '-e', 'trace=fsync,fdatasync', '-o', log])
  const { url } = await childUrls(c)
  const pid = onlyChildOf(c.child.pid as number)
  // strace's child is the coordinator: if the test fails before the SIGTERM below, stop it here
  // (a SIGKILL of strace alone would leave it running, detached).
  t.teardown(() => {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // already gone
    }
  })

  const pgdata = join(c.dataDir, 'pglite')
  const atStart = fsyncedPaths(log)
  t.ok(atStart.includes(join(pgdata, 'global', 'pg_control')), 'start-up: the control file was synced')
  t.ok(atStart.includes(join(pgdata, 'PG_VERSION')), 'start-up: the files the seed planted were synced')
  t.ok(atStart.includes(pgdata), 'start-up: and the directory that names them')

  const res = await fetch(`${url}/admin/tokens`, {
    method: 'POST',
    headers: { authorization: `Bearer ${OPERATOR_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ provider_id: 'durable-1' }),
  })
  t.equal(res.status, 201, 'a token was issued: one commit')
  // The answer came after the commit returned, and the commit after its fsync: strace wrote the
  // line when the call returned, before the coordinator could answer.
  const atCommit = fsyncedPaths(log).slice(atStart.length)
  const wal = atCommit.filter((p) => p.startsWith(join(pgdata, 'pg_wal') + '/'))
  t.ok(wal.length >= 1, `the commit synced the WAL (${wal.length} fsync of pg_wal; all since start-up: ${atCommit.length})`)

  process.kill(pid, 'SIGTERM')
  const exit = await c.exited
  t.equal(exit.code, 0, 'the coordinator stopped cleanly (strace exits with its status)')
})

t.test('attack on availability: a failed fsync ends the process (PostgreSQL would PANIC), rather than freezing it', async (t) => {
  // Before: PostgreSQL saw the error and panicked, PGlite's next query spun inside WebAssembly with
  // the event loop blocked, and the process neither answered nor exited (SIGTERM included), so
  // systemd's Restart=on-failure never came. Now it exits 1 with one line saying why.
  const c = spawnCoordinator(t)
  const { url } = await childUrls(c)
  const pid = c.child.pid as number
  // strace attaches to the running coordinator (every thread) and fails each fsync with EIO from
  // then on: what a failing disk does.
  const strace = spawn(STRACE, ['-f', '-p', String(pid), '-e', 'trace=fsync', '-e', 'inject=fsync:error=EIO', '-o', '/dev/null'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  t.teardown(() => void strace.kill('SIGKILL'))
  // strace reports the attach once it holds every thread: "Process N attached with K threads".
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: strace.stderr as NodeJS.ReadableStream }).on('line', (line) => {
      if (line.includes(`Process ${pid} attached`)) resolve()
    })
    strace.once('exit', (code) => reject(new Error(`strace exited (${code}) before attaching`)))
  })

  const issued = await fetch(`${url}/admin/tokens`, {
    method: 'POST',
    headers: { authorization: `Bearer ${OPERATOR_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ provider_id: 'durable-2' }),
  }).then(
    (res) => res.status,
    () => 'no answer',
  )
  t.not(issued, 201, `the token whose commit did not reach the disk was not handed out (${issued})`)
  const exit = await c.exited
  t.equal(exit.code, 1, 'the process exited 1, for systemd to restart it')
  t.equal(c.lines.filter((l) => l.event === 'db.fsync_failed').length, 1, 'one line says why')
})
