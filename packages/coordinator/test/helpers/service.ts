import type { PoolzResponse as Poolz } from '@poolcoord/protocol'
import type { Test } from 'tap'
import type { Clock } from '../../src/clock.js'
import { envToConfig, type Env, type Limits } from '../../src/config.js'
import type { Database } from '../../src/db/database.js'
import { Service } from '../../src/service.js'
import { defaultMintRules } from '../../src/limits/abuse-settings.js'
import { createTestDb } from './db.js'
import { captureLogs, type CapturedLogs } from './logs.js'

export const OPERATOR_KEY = 'test-operator-key-0123456789abcdef'

export interface TestService {
  svc: Service
  url: string
  wsUrl: string
  db: Database
  logs: CapturedLogs
  poolz(): Promise<Poolz>
}

export type { PoolzResponse as Poolz, PoolzRow } from '@poolcoord/protocol'

/**
 * Every test connects from 127.0.0.1, and most mint far more identities than one address may in an
 * hour: the mint buckets are off unless a test sets `limits.mint` (abuse-limits tests use the
 * defaults). Key recoveries keep their default limit.
 */
const TEST_MINT_RULES = { ...defaultMintRules, mintPerAddress: null, mintPerPrefix: null, mintGlobal: null, mintNewcomer: null }

/** A real coordinator on an ephemeral port, over a database of its own. */
export async function startTestService(
  t: Test,
  opts: { limits?: Partial<Limits>; requireProviderTokens?: boolean; clock?: Clock; db?: Database; logs?: CapturedLogs; env?: Env } = {},
): Promise<TestService> {
  const logs = opts.logs ?? captureLogs()
  const db = opts.db ?? (await createTestDb(t, logs.logger))
  const config = envToConfig(
    {
      host: '127.0.0.1',
      port: '0',
      operatorKey: OPERATOR_KEY,
      requireProviderTokens: opts.requireProviderTokens ? 'true' : 'false',
      dataDir: '/nonexistent',
      ...opts.env,
    },
    { mint: TEST_MINT_RULES, ...opts.limits },
  )
  const svc = await Service.create(config, { log: logs.logger, db, clock: opts.clock })
  t.teardown(() => svc.destroy())
  const { port } = await svc.start()
  const url = `http://127.0.0.1:${port}`
  return {
    svc,
    url,
    wsUrl: `ws://127.0.0.1:${port}/ws/provider`,
    db,
    logs,
    async poolz() {
      const res = await fetch(`${url}/poolz`, { headers: { authorization: `Bearer ${OPERATOR_KEY}` } })
      if (res.status !== 200) throw new Error(`/poolz answered ${res.status}`)
      return (await res.json()) as Poolz
    },
  }
}

/**
 * Polls a condition that the server reaches asynchronously; fails after the deadline. Every 2 ms,
 * not at every turn of the event loop: a test waiting a second for a timer would otherwise spin a
 * whole CPU for that second, taken from the test file running beside it and from the processes
 * it waits on (CI has two vCPUs).
 */
export async function waitFor(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 2))
  }
}
