import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import type { Test } from 'tap'
import { OPERATOR_KEY } from './service.js'
import { childEntry } from './ts-loader.js'

const BIN = fileURLToPath(new URL('../../src/bin.ts', import.meta.url))

export interface ChildCoordinator {
  child: ChildProcess
  /** Every log line the process wrote, parsed. */
  lines: Record<string, unknown>[]
  /** Resolves with the first line (from the start) whose event matches. */
  event(name: string, timeoutMs?: number): Promise<Record<string, unknown>>
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  dataDir: string
}

/**
 * The real coordinator process (src/bin.ts, built or through the test runner's TypeScript loader: ts-loader.ts), on the
 * embedded database in a temporary directory, for what only a process can show: signals and exit
 * codes.
 */
export function spawnCoordinator(t: Test, env: Record<string, string> = {}, prefix: readonly string[] = []): ChildCoordinator {
  const dataDir = mkdtempSync(join(tmpdir(), 'poolcoord-child-'))
  const entry = childEntry(BIN)
  // `prefix`: a command that runs the coordinator (strace, say); `child` is then that command.
  const [command, ...args] = [...prefix, process.execPath, ...entry.args] as [string, ...string[]]
  const child = spawn(command, args, {
    env: {
      PATH: process.env.PATH ?? '',
      COORD_PORT: '0',
      COORD_DATA_DIR: dataDir,
      COORD_OPERATOR_KEY: OPERATOR_KEY,
      COORD_LOG_LEVEL: 'debug',
      // As in startTestService: every test connects from one address (a test may set them back).
      COORD_MINT_RATE_ADDRESS: 'off',
      COORD_MINT_RATE_PREFIX: 'off',
      COORD_MINT_RATE_GLOBAL: 'off',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const lines: Record<string, unknown>[] = []
  let waiters: Array<() => void> = []
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    try {
      lines.push(JSON.parse(line) as Record<string, unknown>)
    } catch {
      lines.push({ raw: line })
    }
    const w = waiters
    waiters = []
    for (const f of w) f()
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => {
      resolve({ code, signal })
      for (const f of waiters) f()
    }),
  )
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await exited
    }
    rmSync(dataDir, { recursive: true, force: true })
  })
  return {
    child,
    lines,
    dataDir,
    exited,
    async event(name, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs
      for (;;) {
        const hit = lines.find((l) => l.event === name)
        if (hit) return hit
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`process exited before ${name}`)
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${name}`)
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 200)
          waiters.push(() => {
            clearTimeout(timer)
            resolve()
          })
        })
      }
    },
  }
}

/** The base URLs of a started child, from its `coordinator.started` line. */
export async function childUrls(c: ChildCoordinator): Promise<{ url: string; wsUrl: string }> {
  const started = await c.event('coordinator.started')
  const port = started.port as number
  return { url: `http://127.0.0.1:${port}`, wsUrl: `ws://127.0.0.1:${port}/ws/provider` }
}
