import t from 'tap'
import { sql } from 'kysely'
import { migrate } from '../../src/db/migrate.js'
import * as errors from '../../src/errors.js'
import { hashToken } from '@poolcoord/protocol'
import { TokenStore } from '../../src/tokens/token-store.js'
import { createTestDb } from '../helpers/db.js'

t.test('issue stores only the hash and a 12-char prefix', async (t) => {
  const db = await createTestDb(t)
  const store = new TokenStore(db)
  const issued = await store.issue('mac-1', 'mac.local', 'self_minted')
  t.match(issued.token, /^[0-9a-f]{64}$/)
  t.equal(issued.tokenPrefix, issued.token.slice(0, 12))
  const rows = await db.kysely.selectFrom('provider_tokens').selectAll().execute()
  t.equal(rows.length, 1)
  t.equal(rows[0]?.token_hash, hashToken(issued.token))
  t.notMatch(JSON.stringify(rows), issued.token, 'cleartext token is not stored anywhere')
  t.equal(rows[0]?.last_used_at, null, 'a new token is unproven')
})

t.test('issue refuses a second active token for one id via the named index', async (t) => {
  const store = new TokenStore(await createTestDb(t))
  await store.issue('mac-1', 'a', 'self_minted')
  await t.rejects(store.issue('mac-1', 'b', 'operator_issued'), errors.ActiveTokenExistsError)
  await t.rejects(store.issue('bad id!', 'b', 'self_minted'), errors.InvalidProviderIdError)
})

t.test('20 concurrent issues for one id: exactly one succeeds', async (t) => {
  const db = await createTestDb(t)
  const store = new TokenStore(db)
  const results = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => store.issue('racer', `h${i}`, 'self_minted')))
  const ok = results.filter((r) => r.status === 'fulfilled')
  const lost = results.filter((r) => r.status === 'rejected' && r.reason instanceof errors.ActiveTokenExistsError)
  t.equal(ok.length, 1)
  t.equal(lost.length, 19, 'every loser sees the typed error, not a generic failure')
  t.same(await activeCount(store, 'racer'), 1)
})

t.test('validateAndMarkUsed validates, stamps last_used_at and refuses revoked tokens', async (t) => {
  const store = new TokenStore(await createTestDb(t))
  const { token } = await store.issue('mac-1', 'a', 'self_minted')
  t.equal(await store.validateAndMarkUsed('f'.repeat(64)), null, 'unknown token')
  const v = await store.validateAndMarkUsed(token)
  t.match(v, { providerId: 'mac-1', tokenPrefix: token.slice(0, 12), inGrace: false, expiresAt: null, pin: null })
  t.match(v?.tokenId, /^\d+$/)
  const [row] = await store.list()
  t.ok(row?.lastUsedAt instanceof Date, 'marked as proven')
  t.ok(await store.revoke(token))
  t.equal(await store.validateAndMarkUsed(token), null, 'revoked token no longer validates')
  t.notOk(await store.revoke(token), 'revoking twice changes nothing')
})

t.test("concurrent validations share statements, and each gets its own token's answer", async (t) => {
  const db = await createTestDb(t)
  const store = new TokenStore(db)
  const now = Date.now()
  const tokens: Record<string, string> = {}
  for (const id of ['ok-1', 'ok-2', 'ok-3', 'revoked', 'expired', 'expires-later', 'in-grace', 'past-grace', 'pinned']) {
    tokens[id] = (await store.issue(id, id, 'operator_issued')).token
  }
  await store.revoke(tokens.revoked!)
  const at = (ms: number) => new Date(now + ms).toISOString()
  await sql`UPDATE provider_tokens SET expires_at = ${at(-1)} WHERE provider_id = 'expired'`.execute(db.kysely)
  await sql`UPDATE provider_tokens SET expires_at = ${at(60_000)} WHERE provider_id = 'expires-later'`.execute(db.kysely)
  await sql`UPDATE provider_tokens SET grace_until = ${at(60_000)} WHERE provider_id = 'in-grace'`.execute(db.kysely)
  await sql`UPDATE provider_tokens SET grace_until = ${at(-1)} WHERE provider_id = 'past-grace'`.execute(db.kysely)
  await sql`INSERT INTO provider_identity_keys (provider_id, public_key, generation) VALUES ('pinned', ${'k'.repeat(43)}, 3)`.execute(db.kysely)
  const valid = new Set(['ok-1', 'ok-2', 'ok-3', 'expires-later', 'in-grace', 'pinned'])
  const ids = [...Object.keys(tokens), 'unknown']
  const unknown = 'f'.repeat(64)
  // 300 validations at once, each token many times over, in a shuffled order.
  const asked = Array.from({ length: 300 }, (_, i) => ids[(i * 7) % ids.length]!)
  const answers = await Promise.all(asked.map((id) => store.validateAndMarkUsed(id === 'unknown' ? unknown : tokens[id]!, now)))
  for (let i = 0; i < asked.length; i++) {
    const id = asked[i]!
    const a = answers[i]
    if (!valid.has(id)) {
      if (a !== null) t.fail(`${id} validated`)
      continue
    }
    if (a?.providerId !== id) t.fail(`${id} got ${a?.providerId}`)
  }
  t.pass('every validation got the answer for its own token')
  const pinned = answers[asked.indexOf('pinned')]
  t.match(pinned, { providerId: 'pinned', pin: { generation: 3 } }, 'the pin is read with it')
  t.match(answers[asked.indexOf('in-grace')], { inGrace: true })
  t.match(answers[asked.indexOf('expires-later')], { expiresAt: now + 60_000 })
  t.equal(store.batcher.validations, 300)
  t.ok(store.batcher.statements < 100, `300 validations took ${store.batcher.statements} statements`)
  const marked = await sql<{ provider_id: string }>`SELECT provider_id FROM provider_tokens WHERE last_used_at IS NOT NULL ORDER BY provider_id`.execute(
    db.kysely,
  )
  t.same(
    marked.rows.map((r) => r.provider_id),
    [...valid].sort(),
    'exactly the valid tokens are marked proven',
  )
})

t.test('a batch that fails fails every validation in it, closed', async (t) => {
  const db = await createTestDb(t)
  const store = new TokenStore(db, { timeoutMs: 2000 })
  const { token } = await store.issue('a', 'a', 'operator_issued')
  // The table goes away under the statements: every one of them errors.
  await sql`ALTER TABLE provider_tokens RENAME TO provider_tokens_gone`.execute(db.kysely)
  const results = await Promise.allSettled(Array.from({ length: 40 }, () => store.validateAndMarkUsed(token)))
  t.ok(
    results.every((r) => r.status === 'rejected' && r.reason instanceof errors.StoreUnavailableError),
    'all 40 rejected with StoreUnavailableError',
  )
  t.ok(store.batcher.statements < 40, `in ${store.batcher.statements} statements`)
  await sql`ALTER TABLE provider_tokens_gone RENAME TO provider_tokens`.execute(db.kysely)
  t.match(await store.validateAndMarkUsed(token), { providerId: 'a' }, 'and the next one, with the store back, validates')
})

t.test('revokeUnused only revokes an unproven self-minted token', async (t) => {
  const store = new TokenStore(await createTestDb(t))
  t.notOk(await store.revokeUnused('nobody'))

  const unproven = await store.issue('a', 'a', 'self_minted')
  t.ok(await store.revokeUnused('a'))
  t.equal(await store.validateAndMarkUsed(unproven.token), null)
  t.notOk(await store.hasActive('a'))

  const proven = await store.issue('b', 'b', 'self_minted')
  await store.validateAndMarkUsed(proven.token)
  t.notOk(await store.revokeUnused('b'), 'a proven token is never self-healed away')
  t.ok(await store.hasActive('b'))

  await store.issue('c', 'c', 'operator_issued')
  t.notOk(await store.revokeUnused('c'), 'an operator-issued token is never self-healed away')
  t.ok(await store.hasActive('c'))
})

t.test('revokeByPrefix: exact, ambiguous, unknown and malformed prefixes', async (t) => {
  const db = await createTestDb(t)
  const store = new TokenStore(db)
  const a = await store.issue('a', 'a', 'self_minted')
  const info = await store.revokeByPrefix(a.token.slice(0, 8))
  t.equal(info.providerId, 'a')
  t.ok(info.revokedAt instanceof Date)
  t.equal(await store.validateAndMarkUsed(a.token), null)
  await t.rejects(store.revokeByPrefix(a.token.slice(0, 8)), errors.TokenNotFoundError, 'already revoked')

  for (const [pid, hash] of [
    ['x', '1'],
    ['y', '2'],
  ] as const) {
    await db.kysely
      .insertInto('provider_tokens')
      .values({ token_hash: hash.repeat(64), token_prefix: `abcdef${hash.repeat(6)}`, provider_id: pid, provider_name: pid, origin: 'self_minted' })
      .execute()
  }
  await t.rejects(store.revokeByPrefix('abcdef'), errors.TokenPrefixAmbiguousError)
  t.equal(await activeCount(store), 2, 'an ambiguous prefix revokes nothing')
  t.equal((await store.revokeByPrefix('abcdef1')).providerId, 'x', 'a longer prefix disambiguates')
  await t.rejects(store.revokeByPrefix('abc'), errors.TokenPrefixInvalidError)
  await t.rejects(store.revokeByPrefix('ABCDEF'), errors.TokenPrefixInvalidError)
  await t.rejects(store.revokeByPrefix("abcdef'--"), errors.TokenPrefixInvalidError)
})

t.test('list never carries a hash or a token', async (t) => {
  const store = new TokenStore(await createTestDb(t))
  const { token } = await store.issue('a', 'host', 'operator_issued')
  const all = await store.list()
  t.equal(all.length, 1)
  t.notOk('tokenHash' in (all[0] as object))
  t.notMatch(JSON.stringify(all), token.slice(12))
  t.notMatch(JSON.stringify(all), hashToken(token))
  await store.revokeUnused('a')
  t.equal((await store.list({ activeOnly: true })).length, 1)
})

t.test('every operation fails closed with errors.StoreUnavailableError when the store is gone', async (t) => {
  const db = await createTestDb(t)
  const store = new TokenStore(db)
  const { token } = await store.issue('a', 'a', 'self_minted')
  await db.close()
  await t.rejects(store.validateAndMarkUsed(token), errors.StoreUnavailableError)
  await t.rejects(store.issue('b', 'b', 'self_minted'), errors.StoreUnavailableError)
  await t.rejects(store.revokeUnused('a'), errors.StoreUnavailableError)
  await t.rejects(store.hasActive('a'), errors.StoreUnavailableError)
  await t.rejects(store.revokeByPrefix(token.slice(0, 8)), errors.StoreUnavailableError)
  await t.rejects(store.list(), errors.StoreUnavailableError)
})

t.test('migrations are idempotent and ran the multi-statement file', async (t) => {
  const db = await createTestDb(t)
  const again = await migrate(db)
  t.same(again.applied, [])
  t.same(again.alreadyApplied, ['0001_provider_tokens.sql', '0002_provider_cordons.sql', '0003_provider_identity.sql', '0004_rate_buckets.sql'])
  const idx = await sql<{ indexname: string }>`
    SELECT indexname FROM pg_indexes WHERE tablename = 'provider_tokens' AND schemaname = current_schema() ORDER BY indexname`.execute(db.kysely)
  t.same(
    idx.rows.map((r) => r.indexname),
    ['provider_tokens_active_prefix', 'provider_tokens_one_active_per_provider', 'provider_tokens_pkey', 'provider_tokens_token_hash_key'],
  )
  const cols = await sql<{ column_name: string }>`
    SELECT column_name FROM information_schema.columns
    WHERE table_name = 'provider_tokens' AND table_schema = current_schema() ORDER BY ordinal_position`.execute(db.kysely)
  t.same(
    cols.rows.map((r) => r.column_name),
    ['id', 'token_hash', 'token_prefix', 'provider_id', 'provider_name', 'origin', 'created_at', 'last_used_at', 'revoked_at', 'expires_at', 'grace_until'],
    'schema.ts and sql/ agree on the columns',
  )
})

async function activeCount(store: TokenStore, pid?: string): Promise<number> {
  return (await store.list({ activeOnly: true })).filter((r) => pid === undefined || r.providerId === pid).length
}

t.test('prune-tokens leaves key-pinned ids alone: their tokens expire by themselves', async (t) => {
  const db = await createTestDb(t)
  const store = new TokenStore(db)
  await store.issue('v1-id', 'a', 'self_minted')
  await sql`UPDATE provider_tokens SET created_at = now() - interval '3 days'`.execute(db.kysely)
  await db.kysely
    .insertInto('provider_tokens')
    .values({
      token_hash: 'c'.repeat(64),
      token_prefix: 'cccccccccccc',
      provider_id: 'keyed',
      provider_name: 'keyed',
      origin: 'self_minted',
      expires_at: new Date(Date.now() + 86_400_000),
    })
    .execute()
  await sql`UPDATE provider_tokens SET created_at = now() - interval '3 days'`.execute(db.kysely)
  t.same(
    (await store.pruneUnproven(86_400_000, true)).map((r) => r.providerId),
    ['v1-id'],
  )
  t.equal(await activeCount(store, 'keyed'), 1)
})
