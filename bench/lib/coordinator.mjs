import { once } from 'node:events'
import { closeSync, mkdirSync, openSync, readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { spawnChild, stopChild } from './children.mjs'

const root = fileURLToPath(new URL('../../', import.meta.url))
export const OPERATOR_KEY = 'bench-operator-key-0123456789abcdef'

/** A free loopback port (released again, so there is a small race we accept). */
export async function freePort() {
  const srv = createServer()
  srv.listen(0, '127.0.0.1')
  await once(srv, 'listening')
  const { port } = srv.address()
  srv.close()
  await once(srv, 'close')
  return port
}

/**
 * Starts `node packages/coordinator/dist/bin.js` as the README says, against `dbUrl`, and waits for /healthz. The
 * process is measured from outside through its pid; its logs go to a file (level warn, so that
 * logging per request does not distort the figures).
 */
export async function startCoordinator({ dbUrl, port, workDir, profileDir = null, label = 'coordinator', extraEnv = {} }) {
  mkdirSync(workDir, { recursive: true })
  const logFile = path.join(workDir, `${label}.log`)
  const logFd = openSync(logFile, 'a')
  const args = ['--import', path.join(root, 'bench/lib/die-with-parent.mjs')]
  if (profileDir !== null) {
    mkdirSync(profileDir, { recursive: true })
    args.push('--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${label}.cpuprofile`)
  }
  args.push(path.join(root, 'packages/coordinator/dist/bin.js'))
  const child = spawnChild(process.execPath, args, {
    cwd: workDir,
    stdio: ['ignore', logFd, logFd, 'ipc'],
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      COORD_HOST: '127.0.0.1',
      COORD_PORT: String(port),
      DATABASE_URL: dbUrl,
      COORD_DATA_DIR: path.join(workDir, 'data'),
      COORD_OPERATOR_KEY: OPERATOR_KEY,
      COORD_LOG_LEVEL: 'warn',
      COORD_DRAIN_TIMEOUT_S: '2',
      // The bench connects thousands of providers from 127.0.0.1 to measure throughput; the abuse
      // limits per address (specs/admission.md §7) would refuse most of them.
      COORD_MINT_RATE_ADDRESS: 'off',
      COORD_MINT_RATE_PREFIX: 'off',
      COORD_MINT_RATE_GLOBAL: 'off',
      COORD_MAX_SESSIONS_PER_ADDRESS: '1000000',
      COORD_MAX_UNPROVEN_PER_ADDRESS: '1000000',
      ...extraEnv,
    },
  })
  closeSync(logFd)
  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 30_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`coordinator exited at start-up (${child.exitCode}):\n${tail(logFile)}`)
    try {
      const res = await fetch(`${url}/healthz`)
      if (res.ok) break
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stopChild(child)
      throw new Error(`coordinator not healthy within 30 s:\n${tail(logFile)}`)
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  return {
    pid: child.pid,
    port,
    url,
    wsUrl: `ws://127.0.0.1:${port}/ws/provider`,
    logFile,
    child,
    /** SIGTERM (drain, then exit), as an operator would stop it. */
    stop: (graceMs = 15_000) => stopChild(child, graceMs),
    health: async () => (await fetch(`${url}/healthz`)).json(),
    poolz: async () => (await fetch(`${url}/poolz`, { headers: { authorization: `Bearer ${OPERATOR_KEY}` } })).json(),
  }
}

function tail(file) {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-20).join('\n')
  } catch {
    return '(no log)'
  }
}

/** Counts the warn/error lines the coordinator logged, by event, for the report. */
export function logEvents(file) {
  const counts = {}
  let text = ''
  try {
    text = readFileSync(file, 'utf8')
  } catch {
    return counts
  }
  for (const line of text.split('\n')) {
    if (line === '') continue
    try {
      const rec = JSON.parse(line)
      const key = rec.event ?? rec.msg ?? 'unknown'
      counts[key] = (counts[key] ?? 0) + 1
    } catch {
      counts['(not json)'] = (counts['(not json)'] ?? 0) + 1
    }
  }
  return counts
}
