import { execFile } from 'node:child_process'
import { appendFileSync, existsSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import pg from 'pg'
import type { Test } from 'tap'
import { unusedPort } from './unused-port.js'

const run = promisify(execFile)

/** Debian's server binaries (apt-get install postgresql); PG_BIN overrides, e.g. /usr/lib/postgresql/16/bin. */
function postgresBinDir(): string {
  if (process.env.PG_BIN) return process.env.PG_BIN
  const root = '/usr/lib/postgresql'
  const versions = existsSync(root) ? readdirSync(root).filter((v) => existsSync(join(root, v, 'bin', 'initdb'))) : []
  const newest = versions.sort((a, b) => Number(b) - Number(a))[0]
  if (newest === undefined) throw new Error(`no initdb under ${root}: apt-get install postgresql (or set PG_BIN)`)
  return join(root, newest, 'bin')
}

export interface PrivatePg {
  /** postgres://postgres@127.0.0.1:<port>/postgres, trust auth. */
  url: string
  port: number
  /** How long initdb and the first start took, for the test to report. */
  timings: { initdbMs: number; startMs: number }
  /** Creates a database (a name of `[a-z0-9_]`) and returns its URL: one per test, so that tests share the cluster but not state. */
  createDatabase(name: string): Promise<string>
  /** pg_ctl start -w, on the same port and data directory. */
  start(): Promise<void>
  /** pg_ctl stop -m fast -w: clients are disconnected, new connections refused. */
  stop(): Promise<void>
  /**
   * SIGSTOP to the postmaster and every process under it: connections stay open and answer
   * nothing, new ones are accepted by the kernel and never served. A hung store.
   */
  freeze(): Promise<void>
  /** SIGCONT to every process freeze() stopped. */
  thaw(): void
}

/**
 * A PostgreSQL cluster of its own for one test file, so that the file can stop and freeze it.
 * initdb and pg_ctl run as the `postgres` OS user when we are root (the server refuses to run as
 * root), in a fresh temporary directory: 127.0.0.1 only, a free port, trust auth, fsync off.
 * Teardown thaws, stops and removes it.
 */
export async function startPrivatePg(t: Test): Promise<PrivatePg> {
  const bin = postgresBinDir()
  const asRoot = process.getuid?.() === 0
  const exec = (file: string, args: string[]) => (asRoot ? run('runuser', ['-u', 'postgres', '--', file, ...args]) : run(file, args))
  const asPostgres = (cmd: string, args: string[]) => exec(join(bin, cmd), args)
  // Created by that user, so it owns the directory; root removes it at teardown all the same.
  const dir = (await exec('mktemp', ['-d', join(tmpdir(), 'poolcoord-pg-XXXXXX')])).stdout.trim()
  const data = join(dir, 'data')
  const port = await unusedPort()
  let frozen: number[] = []
  let running = false

  const thaw = (): void => {
    for (const pid of frozen) signal(pid, 'SIGCONT')
    frozen = []
  }
  const stop = async (): Promise<void> => {
    thaw()
    if (!running) return
    running = false
    await asPostgres('pg_ctl', ['-D', data, '-m', 'fast', '-w', '-t', '30', 'stop'])
  }
  // If the test process exits without its teardown, leave no server behind (SIGQUIT: immediate shutdown).
  const onExit = (): void => {
    thaw()
    const pid = running ? postmasterPid(data) : null
    if (pid !== null) signal(pid, 'SIGQUIT')
  }
  process.once('exit', onExit)
  t.teardown(async () => {
    process.removeListener('exit', onExit)
    try {
      await stop()
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  let at = performance.now()
  await asPostgres('initdb', ['-D', data, '--no-sync', '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--locale=C', '--no-instructions'])
  const initdbMs = performance.now() - at
  appendFileSync(
    join(data, 'postgresql.conf'),
    [
      `port = ${port}`,
      `listen_addresses = '127.0.0.1'`,
      `unix_socket_directories = '${dir}'`,
      'fsync = off',
      'synchronous_commit = off',
      'full_page_writes = off',
      '',
    ].join('\n'),
  )
  const start = async (): Promise<void> => {
    if (running) return
    await asPostgres('pg_ctl', ['-D', data, '-l', join(dir, 'server.log'), '-w', '-t', '30', 'start'])
    running = true
  }
  at = performance.now()
  await start()
  const startMs = performance.now() - at

  const url = `postgres://postgres@127.0.0.1:${port}/postgres`
  return {
    url,
    port,
    timings: { initdbMs, startMs },
    async createDatabase(name) {
      if (!/^[a-z0-9_]{1,63}$/.test(name)) throw new Error('database name must match ^[a-z0-9_]+$')
      const client = new pg.Client({ connectionString: url })
      await client.connect()
      try {
        await client.query(`CREATE DATABASE ${name}`)
      } finally {
        await client.end()
      }
      return `postgres://postgres@127.0.0.1:${port}/${name}`
    },
    start,
    stop,
    async freeze() {
      const postmaster = postmasterPid(data)
      if (postmaster === null) throw new Error('freeze(): the server is not running')
      // The postmaster first, so that it forks no backend behind our back; then its children
      // (every server process is one), again until a pass finds none new.
      signal(postmaster, 'SIGSTOP')
      frozen.push(postmaster)
      for (;;) {
        const found = (await childrenOf(postmaster)).filter((pid) => !frozen.includes(pid))
        if (found.length === 0) break
        for (const pid of found) signal(pid, 'SIGSTOP')
        frozen.push(...found)
      }
    },
    thaw,
  }
}

function postmasterPid(data: string): number | null {
  try {
    const pid = Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0])
    return Number.isInteger(pid) && pid > 0 ? pid : null
  } catch {
    return null
  }
}

async function childrenOf(pid: number): Promise<number[]> {
  try {
    const { stdout } = await run('pgrep', ['-P', String(pid)])
    return stdout.split('\n').filter(Boolean).map(Number)
  } catch {
    return [] // pgrep exits 1 when there are none
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig)
  } catch {
    // Already gone.
  }
}
