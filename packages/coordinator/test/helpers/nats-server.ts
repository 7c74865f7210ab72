import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import { unusedPort } from './unused-port.js'

/** Debian's nats-server (apt-get install nats-server); NATS_SERVER overrides. */
export const NATS_SERVER_BIN = process.env.NATS_SERVER ?? '/usr/sbin/nats-server'

export interface NatsServerOptions {
  /** Start with JetStream (-js), storing in the server's own temporary directory. Default true. */
  jetstream?: boolean
  /** The server's max_payload in bytes, through a config file; the server default is 1 MiB. */
  maxPayload?: number
}

export interface NatsServer {
  url: string
  port: number
  /** JetStream's store: kept across restart(), so KV state survives as it would in production. */
  storeDir: string
  /** SIGTERM, and wait for the exit. */
  stop(): Promise<void>
  /** SIGSTOP: the server keeps its sockets open and answers nothing, like a hung host. */
  pause(): void
  /** SIGCONT. */
  resume(): void
  /** Starts again on the same port and store directory (stopping first if it runs). */
  restart(): Promise<void>
}

/**
 * A private nats-server for one test file, on a free port, killed and removed at teardown.
 * Resolves once the server logs that it is ready.
 */
export async function startNatsServer(t: Test, opts: NatsServerOptions = {}): Promise<NatsServer> {
  if (!existsSync(NATS_SERVER_BIN)) throw new Error(`${NATS_SERVER_BIN} not found: apt-get install nats-server (or set NATS_SERVER)`)
  const dir = mkdtempSync(join(tmpdir(), 'poolcoord-nats-'))
  const port = await unusedPort()
  const storeDir = join(dir, 'store')
  const args = ['-a', '127.0.0.1', '-p', String(port)]
  if (opts.jetstream !== false) args.push('-js', '-sd', storeDir)
  if (opts.maxPayload !== undefined) {
    const conf = join(dir, 'nats.conf')
    writeFileSync(conf, `max_payload: ${opts.maxPayload}\n`)
    args.push('-c', conf)
  }
  let child: ChildProcess | null = null
  let paused = false

  const launch = async (): Promise<void> => {
    const proc = spawn(NATS_SERVER_BIN, args, { stdio: ['ignore', 'ignore', 'pipe'] })
    child = proc
    let log = ''
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`nats-server did not become ready in 10 s:\n${log}`)), 10_000)
      proc.stderr?.on('data', (d: Buffer) => {
        log += d.toString()
        if (log.includes('Server is ready')) {
          clearTimeout(timer)
          resolve()
        }
      })
      proc.once('error', (err) => {
        clearTimeout(timer)
        reject(err)
      })
      proc.once('exit', (code) => {
        clearTimeout(timer)
        reject(new Error(`nats-server exited with ${code}:\n${log}`))
      })
    })
  }

  const stop = async (): Promise<void> => {
    const proc = child
    if (proc === null || proc.exitCode !== null || proc.signalCode !== null) return
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
    if (paused) proc.kill('SIGCONT')
    paused = false
    proc.kill('SIGTERM')
    const killer = setTimeout(() => proc.kill('SIGKILL'), 5_000)
    await exited
    clearTimeout(killer)
  }

  t.teardown(async () => {
    const proc = child as ChildProcess | null
    if (proc !== null && proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
      proc.kill('SIGKILL')
      await exited
    }
    rmSync(dir, { recursive: true, force: true })
  })

  await launch()
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    stop,
    pause() {
      paused = true
      child?.kill('SIGSTOP')
    },
    resume() {
      paused = false
      child?.kill('SIGCONT')
    },
    async restart() {
      await stop()
      await launch()
    },
  }
}
