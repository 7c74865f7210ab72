import pg from 'pg'
import { benchToken, hashToken, seededProviderId } from './tokens.mjs'

/** One throwaway database per coordinator run: bench_<runner pid>_<n>. */
let created = 0
const owned = new Set()

function withDb(adminUrl, name) {
  const u = new URL(adminUrl)
  u.pathname = `/${name}`
  return u.toString()
}

async function admin(adminUrl, fn) {
  const client = new pg.Client({ connectionString: adminUrl })
  await client.connect()
  try {
    return await fn(client)
  } finally {
    await client.end()
  }
}

/** Drops bench databases left behind by runners that no longer exist. */
export async function dropStaleDatabases(adminUrl) {
  await admin(adminUrl, async (c) => {
    const { rows } = await c.query(`SELECT datname FROM pg_database WHERE datname ~ '^bench_[0-9]+_[0-9]+$'`)
    for (const { datname } of rows) {
      const pid = Number(datname.split('_')[1])
      if (pid !== process.pid && !alive(pid)) await c.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`)
    }
  })
}

function alive(pid) {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

export async function createDatabase(adminUrl) {
  const name = `bench_${process.pid}_${++created}`
  await admin(adminUrl, (c) => c.query(`CREATE DATABASE "${name}"`))
  owned.add(name)
  return { name, url: withDb(adminUrl, name) }
}

export async function dropDatabase(adminUrl, name) {
  await admin(adminUrl, (c) => c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`))
  owned.delete(name)
}

export async function dropOwnedDatabases(adminUrl) {
  for (const name of [...owned]) await dropDatabase(adminUrl, name).catch(() => undefined)
}

/**
 * Inserts operator-issued tokens for providers bench-<from>…bench-<from+count-1>, as
 * `coordinator-cli issue-token` would, in bulk. The schema must exist (the coordinator migrates
 * at start-up).
 */
export async function seedTokens(url, from, count) {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    for (let start = from; start < from + count; start += 5000) {
      const n = Math.min(5000, from + count - start)
      const hashes = []
      const prefixes = []
      const ids = []
      for (let i = start; i < start + n; i++) {
        const token = benchToken(i)
        hashes.push(hashToken(token))
        prefixes.push(token.slice(0, 12))
        ids.push(seededProviderId(i))
      }
      await client.query(
        `INSERT INTO provider_tokens (token_hash, token_prefix, provider_id, provider_name, origin)
         SELECT h, p, i, i || '.bench', 'operator_issued' FROM unnest($1::text[], $2::text[], $3::text[]) AS t(h, p, i)`,
        [hashes, prefixes, ids],
      )
    }
  } finally {
    await client.end()
  }
}

/** Same starting state for every Postgres-bound measurement (dead tuples slow the UPDATE down). */
export async function settleTable(url) {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    await client.query('VACUUM ANALYZE provider_tokens')
    await client.query('CHECKPOINT')
  } finally {
    await client.end()
  }
}
