import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import type { AgentConfig } from '@poolcoord/provider-agent/agent-config'
import { setupAgent } from '@poolcoord/provider-agent/agent-setup'
import { MockBackend, type MockBackendOptions } from '@poolcoord/provider-agent/mock-backend'
import type { AgentExit, ProviderAgent } from '@poolcoord/provider-agent/provider-agent'
import { defaultBackoff, type BackoffSettings } from '@poolcoord/provider-agent/reconnect-policy'
import { captureLogs, type CapturedLogs } from './logs.js'

/** Fast retries for transient closes; the long backoff after a refused token keeps its default. */
export const TEST_BACKOFF: BackoffSettings = { ...defaultBackoff, baseMs: 20, capMs: 200, floorMs: 100 }

export interface AdmittedEvent {
  authState: string
  assignedId: string
  withToken: boolean
}

export interface RunningAgent {
  agent: ProviderAgent
  logs: CapturedLogs
  exit: Promise<AgentExit>
  admissions: AdmittedEvent[]
  backoffs: Array<{ kind: string; code: number | null; delayMs: number }>
  /** Resolves at the n-th admission (1-based). */
  admitted(n?: number): Promise<AdmittedEvent>
  stop(): Promise<AgentExit>
}

export async function startMock(t: Test, opts: MockBackendOptions = {}): Promise<MockBackend & { url: string }> {
  const mock = await MockBackend.start(opts)
  t.teardown(() => mock.close())
  return mock
}

export async function stateDir(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'poolcoord-agent-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return join(dir, 'state')
}

export function agentConfig(over: Partial<AgentConfig> & Pick<AgentConfig, 'coordinatorUrl' | 'backendUrl' | 'stateDir'>): AgentConfig {
  return {
    providerId: null,
    hostname: 'test-host',
    maxConcurrency: 2,
    maxContextTokens: 8192,
    models: null,
    throughputTps: null,
    importToken: null,
    logLevel: 'debug',
    ...over,
  }
}

/** A real agent, in process, over a real socket; stopped at teardown. */
export async function startAgent(
  t: Test,
  config: AgentConfig,
  /**
   * `protocol` defaults to 'v1' here: the older agent tests exercise the v1 path, which old
   * binaries and coordinators without identity v2 still take; agent-identity.test.ts passes 'v2'.
   */
  opts: { backoff?: BackoffSettings; drainTimeoutMs?: number; beforeRun?: () => Promise<void>; protocol?: 'v1' | 'v2' } = {},
): Promise<RunningAgent> {
  const logs = captureLogs()
  const agent = await setupAgent(config, {
    log: logs.logger,
    uid: process.getuid!(),
    binaryVersion: 'poolcoord-provider/test',
    backoff: opts.backoff ?? TEST_BACKOFF,
    drainTimeoutMs: opts.drainTimeoutMs,
    protocol: opts.protocol ?? 'v1',
  })
  const admissions: AdmittedEvent[] = []
  const waiters: Array<{ n: number; resolve: (e: AdmittedEvent) => void }> = []
  const backoffs: RunningAgent['backoffs'] = []
  agent.on('admitted', (e: AdmittedEvent) => {
    admissions.push(e)
    for (const w of waiters.filter((w) => w.n === admissions.length)) w.resolve(e)
  })
  agent.on('backoff', (e: RunningAgent['backoffs'][number]) => backoffs.push(e))
  await opts.beforeRun?.()
  const exit = agent.run()
  const stop = async (): Promise<AgentExit> => {
    await agent.stop()
    return exit
  }
  t.teardown(stop)
  return {
    agent,
    logs,
    exit,
    admissions,
    backoffs,
    admitted: (n = 1) =>
      admissions.length >= n
        ? Promise.resolve(admissions[n - 1]!)
        : new Promise((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error(`agent not admitted ${n} time(s) within 10 s`)), 10_000)
            waiters.push({ n, resolve: (e) => (clearTimeout(timer), resolve(e)) })
          }),
    stop,
  }
}
