import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { runCli as runInProcess } from '../../src/cli/cli.js'
import { childEntry } from './ts-loader.js'
import { unusedPort } from './unused-port.js'

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

/** A loopback port with nothing listening, for "no coordinator answers" (see unused-port.ts). */
export async function closedPort(): Promise<string> {
  return String(await unusedPort())
}
