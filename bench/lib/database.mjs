import pg from 'pg'
import { benchIdentityKey, benchToken, hashToken, seededProviderId } from './tokens.mjs'

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
  await seed(url, from, count, false)
}

/**
 * Identity v2: the same tokens, for ids with a pinned Ed25519 key (benchIdentityKey(i), whose
 * seed every process derives from i), as an enrolled provider has them. The tokens expire in
 * 30 days, the default COORD_TOKEN_TTL, as a fresh key-pinned token does: more than half the TTL
 * away, so that a `connect` keeps its bearer and the bench measures no renewal.
 */
export async function seedKeyedProviders(url, from, count) {
  await seed(url, from, count, true)
}

async function seed(url, from, count, keyed) {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    for (let start = from; start < from + count; start += 5000) {
      const n = Math.min(5000, from + count - start)
      const hashes = []
      const prefixes = []
      const ids = []
      const keys = []
      for (let i = start; i < start + n; i++) {
        const token = benchToken(i)
        hashes.push(hashToken(token))
        prefixes.push(token.slice(0, 12))
        ids.push(seededProviderId(i))
        if (keyed) keys.push(benchIdentityKey(i))
      }
      await client.query('BEGIN')
      await client.query(
        `INSERT INTO provider_tokens (token_hash, token_prefix, provider_id, provider_name, origin, expires_at)
         SELECT h, p, i, i || '.bench', 'operator_issued', CASE WHEN $4::boolean THEN now() + interval '30 days' END
         FROM unnest($1::text[], $2::text[], $3::text[]) AS t(h, p, i)`,
        [hashes, prefixes, ids, keyed],
      )
      if (keyed)
        await client.query(`INSERT INTO provider_identity_keys (provider_id, public_key) SELECT i, k FROM unnest($1::text[], $2::text[]) AS t(i, k)`, [
          ids,
          keys,
        ])
      await client.query('COMMIT')
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
    await client.query('VACUUM ANALYZE provider_identity_keys')
    await client.query('CHECKPOINT')
  } finally {
    await client.end()
  }
}
