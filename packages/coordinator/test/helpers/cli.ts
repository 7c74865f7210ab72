import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { runCli as runInProcess } from '../../src/cli/cli.js'
import { childEntry } from './ts-loader.js'

const BIN = fileURLToPath(new URL('../../src/cli/coordinator-cli.ts', import.meta.url))

export interface CliRun {
  code: number | null
  stdout: string
  stderr: string
}

/**
 * One coordinator-cli invocation, in this process: the same entry point the executable calls,
 * with its own environment and captured output. Fast enough to run dozens per test.
 */
export async function runCli(args: string[], env: Record<string, string>): Promise<CliRun> {
  let stdout = ''
  let stderr = ''
  const code = await runInProcess(args, env, { out: (s) => void (stdout += `${s}\n`), err: (s) => void (stderr += s) })
  return { code, stdout, stderr }
}

/** The real executable as its own process (built, or through the test runner's TypeScript loader: ts-loader.ts). */
export function spawnCli(args: string[], env: Record<string, string>): Promise<CliRun> {
  const entry = childEntry(BIN)
  const child = spawn(process.execPath, [...entry.args, ...args], {
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => void (stdout += d.toString()))
  child.stderr.on('data', (d: Buffer) => void (stderr += d.toString()))
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })))
}

/**
 * A loopback port with nothing listening, for "no coordinator answers". Taken below the kernel's
 * ephemeral range, where no server of the tests binds (they all listen on port 0): a port
 * released back into that range can go to another test file's coordinator a moment later, one
 * that holds the same operator key (CI saw `status` succeed against one). Checked free by
 * binding it. (From 20000 up: fetch refuses the well-known "bad ports", such as 9 or 10080,
 * before it ever connects.)
 */
export async function closedPort(): Promise<string> {
  const { createServer } = await import('node:net')
  const free = (port: number): Promise<boolean> =>
    new Promise((resolve) => {
      const server = createServer()
      server.once('error', () => resolve(false))
      server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
    })
  const below = ephemeralLow()
  for (let i = 0; i < 100; i++) {
    const port = 20000 + Math.floor(Math.random() * (below - 20000))
    if (await free(port)) return String(port)
  }
  throw new Error(`no free port in 20000-${below - 1}`)
}

/** The first port of Linux's ephemeral range; the usual 32768 elsewhere or if it is set oddly. */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0])
    if (Number.isInteger(low) && low > 21000) return low
  } catch {
    // not Linux
  }
  return 32768
}
