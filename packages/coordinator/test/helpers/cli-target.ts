import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import type { Test } from 'tap'
import { openDatabase, type Database } from '../../src/db/database.js'
import { createLogger } from '../../src/logger.js'
import { closedPort } from './cli.js'
import { OPERATOR_KEY } from './service.js'

const pgUrl = process.env.TEST_DATABASE_URL
const quiet = createLogger({ level: 'silent' })

export interface CliTarget {
  /** The CLI's environment: nothing listens on its COORD_PORT, so it works on the database directly. */
  env: Record<string, string>
  open: () => Promise<Database>
}

/** A database of its own for coordinator-cli: a fresh PostgreSQL database when TEST_DATABASE_URL is set, else an embedded data directory. */
export async function cliTarget(t: Test): Promise<CliTarget> {
  const dataDir = mkdtempSync(join(tmpdir(), 'poolcoord-cli-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const base = { COORD_DATA_DIR: dataDir, COORD_OPERATOR_KEY: OPERATOR_KEY, COORD_PORT: await closedPort() }
  if (pgUrl === undefined) return { env: base, open: () => openDatabase({ url: null, dataDir, log: quiet }) }
  const name = `poolcoord_cli_${randomBytes(6).toString('hex')}`
  await adminQuery(`CREATE DATABASE ${name}`)
  t.teardown(() => adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`))
  const url = new URL(pgUrl)
  url.pathname = `/${name}`
  return { env: { ...base, DATABASE_URL: url.toString() }, open: () => openDatabase({ url: url.toString(), dataDir, log: quiet }) }
}

export async function withDb<T>(target: Pick<CliTarget, 'open'>, fn: (db: Database) => Promise<T>): Promise<T> {
  const db = await target.open()
  try {
    return await fn(db)
  } finally {
    await db.close()
  }
}

async function adminQuery(text: string): Promise<void> {
  const c = new pg.Client({ connectionString: pgUrl })
  await c.connect()
  try {
    await c.query(text)
  } finally {
    await c.end()
  }
}
