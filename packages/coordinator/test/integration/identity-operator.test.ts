import { mkdtempSync, rmSync } from 'node:fs'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join as joinPath } from 'node:path'
import { keyFingerprint, type AdminIdentity, type AdminToken, type IdentityActionResponse } from '@poolcoord/protocol'
import t, { type Test } from 'tap'
import { ManualClock } from '../../src/clock.js'
import { migrate } from '../../src/db/migrate.js'
import { IdentityStore } from '../../src/tokens/identity-store.js'
import { runCli } from '../helpers/cli.js'
import { cliTarget, withDb } from '../helpers/cli-target.js'
import { generateIdentityKey, keyJoin, type IdentityKeyPair } from '../helpers/key-client.js'
import { join } from '../helpers/provider-client.js'
import { OPERATOR_KEY, startTestService, waitFor, type TestService } from '../helpers/service.js'

/*
 * The operator surface of identity v2 (specs/operator-api.md, specs/cli.md): list-identities,
 * revoke-identity and reset-identity through the admin API and coordinator-cli, against a real
 * coordinator and real v2 providers, and the token list's expiry and grace columns.
 */
const DAY = 86_400_000
const REFUSED = { code: 4005, reason: 'invalid_token' }
const KICKED = { code: 4007, reason: 'kicked' }
const auth = { authorization: `Bearer ${OPERATOR_KEY}` }

function admin(s: TestService, method: 'GET' | 'POST', path: string, headers: Record<string, string> = auth) {
  return fetch(`${s.url}${path}`, { method, headers })
}

/** coordinator-cli, in process, pointed at the running coordinator. */
function cliFor(t: Test, s: TestService) {
  const dataDir = mkdtempSync(joinPath(tmpdir(), 'poolcoord-idop-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const env = { COORD_DATA_DIR: dataDir, COORD_OPERATOR_KEY: OPERATOR_KEY, COORD_PORT: new URL(s.url).port }
  return (...args: string[]) => runCli(args, env)
}

/** A POST with the operator key whose path reaches the server exactly as written. */
function rawPost(s: TestService, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const { hostname, port } = new URL(s.url)
    const req = request({ hostname, port, path, method: 'POST', headers: auth }, (res) => {
      let body = ''
      res.on('data', (d: Buffer) => (body += d.toString()))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

/** Enrolls `id` with a fresh key; the session stays open unless `close`. */
async function enroll(s: TestService, id: string, o: { close?: boolean; key?: IdentityKeyPair } = {}) {
  const key = o.key ?? generateIdentityKey()
  const e = await keyJoin(s.wsUrl, id, key, { intent: 'enroll' })
  if (e.ack === undefined) throw new Error(`enroll refused: ${JSON.stringify(e.close)}`)
  if (o.close === true) await gone(s, e.client)
  return { key, token: e.ack.assigned_provider_token as string, client: e.client }
}

async function gone(s: TestService, client: { close(): Promise<unknown> }): Promise<void> {
  await client.close()
  await waitFor(async () => (await s.poolz()).summary.total === 0, 'session removal')
}

/** Neither half of a key pair appears in `text`. */
function noKey(t: Test, text: string, keys: IdentityKeyPair[], what: string): void {
  for (const k of keys) t.notOk(text.includes(k.publicKey) || text.includes(k.privateSeed), `${what}: never a key`)
}

t.test('list-identities: generation and fingerprints, never a key; list-tokens: expiry and grace', async (t) => {
  const clock = new ManualClock(Date.now())
  const s = await startTestService(t, { clock })
  const cli = cliFor(t, s)
  const { key, token } = await enroll(s, 'mac-1', { close: true })
  const next = generateIdentityKey()
  const rotated = await keyJoin(s.wsUrl, 'mac-1', key, { intent: 'rotate', next, token })
  t.equal(rotated.ack?.identity_generation, 2)
  await gone(s, rotated.client)
  const other = await enroll(s, 'gpu-2', { close: true })

  const res = await admin(s, 'GET', '/admin/identities')
  t.equal(res.status, 200)
  const text = await res.text()
  noKey(t, text, [key, next, other.key], 'GET /admin/identities')
  const { identities } = JSON.parse(text) as { identities: AdminIdentity[] }
  t.same(
    identities.map((r) => r.provider_id),
    ['gpu-2', 'mac-1'],
    'sorted by provider_id',
  )
  t.match(identities[1], {
    provider_id: 'mac-1',
    generation: 2,
    key_fingerprint: keyFingerprint(next.publicKey),
    previous_key_fingerprint: keyFingerprint(key.publicKey),
    previous_valid_until: new Date(clock.now() + 7 * DAY).toISOString(),
    rotated_at: String,
    revoked: false,
    revoked_at: null,
  })
  t.match(identities[0], { generation: 1, key_fingerprint: keyFingerprint(other.key.publicKey), previous_key_fingerprint: null, rotated_at: null })

  const human = await cli('list-identities')
  t.equal(human.code, 0)
  t.equal(human.stderr, '', 'no fallback note: the coordinator answered')
  noKey(t, human.stdout, [key, next, other.key], 'list-identities')
  t.match(human.stdout, /provider_id\s+generation\s+key_fingerprint\s+previous_key_fingerprint\s+previous_valid_until\s+created_at\s+rotated_at\s+revoked/)
  t.match(human.stdout, new RegExp(`mac-1\\s+2\\s+${keyFingerprint(next.publicKey)}\\s+${keyFingerprint(key.publicKey)}\\s+\\S+Z\\s+\\S+Z\\s+\\S+Z\\s+no`))
  t.match(human.stdout, new RegExp(`gpu-2\\s+1\\s+${keyFingerprint(other.key.publicKey)}\\s+-\\s+-\\s+\\S+Z\\s+-\\s+no`))
  const asJson = await cli('list-identities', '--json')
  noKey(t, asJson.stdout, [key, next, other.key], 'list-identities --json')
  t.same(JSON.parse(asJson.stdout), identities, '--json: the admin API rows')

  // Past half the TTL, a connect renews the token: the old one enters grace, the new one expires in 30 days.
  clock.advance(16 * DAY)
  const renewed = await keyJoin(s.wsUrl, 'mac-1', next, { intent: 'connect', token })
  t.match(renewed.ack?.assigned_provider_token, /^[0-9a-f]{64}$/)
  await gone(s, renewed.client)
  const walkIn = await join(s.wsUrl, 'walk-in')
  t.equal(walkIn.ack?.auth_state, 'self_minted', 'an id with no key: its token never expires')
  await gone(s, walkIn.client)
  const tokens = JSON.parse((await cli('list-tokens', '--json')).stdout) as AdminToken[]
  const mac = tokens.filter((r) => r.provider_id === 'mac-1' && !r.revoked)
  t.equal(mac.length, 2, 'the old token in grace, and its successor')
  const [old, fresh] = mac
  t.match(old, { grace_until: new Date(clock.now() + 10 * 60_000).toISOString(), expires_at: String })
  t.match(fresh, { grace_until: null, expires_at: new Date(clock.now() + 30 * DAY).toISOString() })
  t.match(
    tokens.find((r) => r.provider_id === 'walk-in'),
    { expires_at: null, grace_until: null },
  )
  const table = await cli('list-tokens', '--active')
  t.match(table.stdout, /prefix\s+provider_id\s+name\s+origin\s+created_at\s+last_used_at\s+expires_at\s+grace_until\s+revoked/)
  t.match(table.stdout, new RegExp(`${old?.token_prefix}\\s+mac-1\\s+.*${old?.expires_at}\\s+${old?.grace_until}\\s+no`))
  t.match(table.stdout, new RegExp(`${fresh?.token_prefix}\\s+mac-1\\s+.*${fresh?.expires_at}\\s+-\\s+no`))
  t.match(table.stdout, /walk-in\s+.*\s+never\s+-\s+no/)
})

t.test('revoke-identity blocks the id and kicks its live session; reset-identity lets it enroll afresh (CLI)', async (t) => {
  const s = await startTestService(t)
  const cli = cliFor(t, s)
  const { key, token, client } = await enroll(s, 'mac-1')
  t.equal((await s.poolz()).summary.total, 1, 'live')

  const blocked = await cli('revoke-identity', '--provider-id', 'mac-1')
  t.equal(blocked.code, 0)
  t.match(blocked.stdout, /^blocked mac-1: .*until reset-identity --provider-id mac-1\. 1 token revoked; its live session was closed\./)
  t.same(await client.closed, KICKED, 'the live session was closed (4007)')
  t.same((await keyJoin(s.wsUrl, 'mac-1', key, { intent: 'recover' })).close, REFUSED, 'no recovery')
  t.same((await keyJoin(s.wsUrl, 'mac-1', key, { intent: 'connect', token })).close, REFUSED, 'no connect')
  t.same((await keyJoin(s.wsUrl, 'mac-1', generateIdentityKey(), { intent: 'enroll' })).close, REFUSED, 'no enrolment with another key')
  t.same((await join(s.wsUrl, 'mac-1')).close, REFUSED, 'no tokenless v1')
  t.equal((await s.poolz()).summary.total, 0)
  const listed = JSON.parse((await cli('list-identities', '--json')).stdout) as AdminIdentity[]
  t.match(listed, [{ provider_id: 'mac-1', revoked: true, revoked_at: String }])
  t.match((await cli('list-identities')).stdout, /mac-1\s+1\s+[0-9a-f]{12}\s+-\s+-\s+\S+Z\s+-\s+\d{4}-\S+Z/, 'revoked: since when')

  const again = JSON.parse((await cli('revoke-identity', '--provider-id', 'mac-1', '--json')).stdout) as IdentityActionResponse
  t.same(again, { provider_id: 'mac-1', action: 'revoked', revoked_tokens: 0, kicked: false }, 'idempotent; nothing left to revoke or close')

  const reset = await cli('reset-identity', '--provider-id', 'mac-1')
  t.equal(reset.code, 0)
  t.match(reset.stdout, /^reset mac-1: its key is no longer pinned; 0 tokens revoked\. The id may now enroll afresh, and first use wins again/)
  t.match(
    reset.stdout,
    /issue-token --provider-id mac-1; required when require_provider_tokens is on\): while the id has an active token, only its holder can enroll/,
  )
  t.same(JSON.parse((await cli('list-identities', '--json')).stdout), [], 'no pin')
  const fresh = generateIdentityKey()
  const e = await keyJoin(s.wsUrl, 'mac-1', fresh, { intent: 'enroll' })
  t.equal(e.ack?.auth_state, 'key_proven', 'enrolled afresh, with a new key')
  t.same((await s.poolz()).pool[0]?.identity, { pinned: true, generation: 1, key_fingerprint: keyFingerprint(fresh.publicKey) })
  await gone(s, e.client)

  const r2 = JSON.parse((await cli('reset-identity', '--provider-id', 'mac-1', '--json')).stdout) as IdentityActionResponse
  t.same(r2, { provider_id: 'mac-1', action: 'reset', revoked_tokens: 1, kicked: null }, 'reset revokes the tokens, closes nothing')
})

t.test('revoke and reset over HTTP: the answers, and the admission log', async (t) => {
  const s = await startTestService(t)
  const { key, client } = await enroll(s, 'mac-1')
  const res = await admin(s, 'POST', '/admin/identities/mac-1/revoke')
  t.equal(res.status, 200)
  t.same(await res.json(), { provider_id: 'mac-1', action: 'revoked', revoked_tokens: 1, kicked: true })
  t.same(await client.closed, KICKED)
  t.same((await keyJoin(s.wsUrl, 'mac-1', key, { intent: 'recover' })).close, REFUSED)
  t.equal(s.logs.events('admission.identity_revoked').length, 1, 'refused as revoked, not as unknown')
  const reset = await admin(s, 'POST', '/admin/identities/mac-1/reset')
  t.equal(reset.status, 200)
  t.same(await reset.json(), { provider_id: 'mac-1', action: 'reset', revoked_tokens: 0, kicked: null })
  t.equal((await keyJoin(s.wsUrl, 'mac-1', key, { intent: 'enroll' })).ack?.auth_state, 'key_proven', 'even the old key may enroll afresh')
})

t.test('after reset, an issued token reserves the id: only its holder enrolls', async (t) => {
  const s = await startTestService(t)
  const cli = cliFor(t, s)
  await enroll(s, 'mac-1', { close: true })
  t.equal((await cli('reset-identity', '--provider-id', 'mac-1')).code, 0)
  const issued = JSON.parse((await cli('issue-token', '--provider-id', 'mac-1', '--json')).stdout) as { token: string }
  t.same((await keyJoin(s.wsUrl, 'mac-1', generateIdentityKey(), { intent: 'enroll' })).close, REFUSED, 'a tokenless enrolment is refused')
  t.same((await join(s.wsUrl, 'mac-1')).close, REFUSED, 'so is a tokenless v1 hello')
  const right = generateIdentityKey()
  const e = await keyJoin(s.wsUrl, 'mac-1', right, { intent: 'enroll', token: issued.token })
  t.equal(e.ack?.auth_state, 'key_proven', 'the holder of the issued token enrolls')
  t.match(JSON.parse((await cli('list-identities', '--json')).stdout), [{ provider_id: 'mac-1', key_fingerprint: keyFingerprint(right.publicKey) }])
})

t.test('revoke-token on a key-pinned id: the thief is out, the key holder recovers by itself', async (t) => {
  const s = await startTestService(t)
  const cli = cliFor(t, s)
  const { key, token } = await enroll(s, 'mac-1', { close: true })
  const [tk] = JSON.parse((await cli('list-tokens', '--active', '--json')).stdout) as AdminToken[]
  const r = await cli('revoke-token', '--token-prefix', tk?.token_prefix as string)
  t.equal(r.code, 0)
  t.match(r.stdout, /If mac-1 has a pinned identity key \(list-identities\), the provider holding that key recovers by itself/)
  t.match(r.stdout, /the right answer to a leaked token/)
  t.match(r.stdout, /To block the id entirely, key included: revoke-identity --provider-id mac-1\./)
  t.same((await keyJoin(s.wsUrl, 'mac-1', generateIdentityKey(), { intent: 'connect', token })).close, REFUSED, 'the leaked token is dead')
  const back = await keyJoin(s.wsUrl, 'mac-1', key, { intent: 'recover' })
  t.equal(back.ack?.auth_state, 'key_proven', 'the key holder recovers with no operator')
})

t.test('errors: unknown id 404, malformed id 400, no key 401; nothing changes', async (t) => {
  const s = await startTestService(t)
  const cli = cliFor(t, s)
  const { client } = await enroll(s, 'mac-1')
  for (const action of ['revoke', 'reset']) {
    const unknown = await admin(s, 'POST', `/admin/identities/nobody/${action}`)
    t.equal(unknown.status, 404, `${action}: an id with no pin`)
    t.match(await unknown.json(), { error: { code: 'COORD_IDENTITY_NOT_PINNED', type: 'invalid_request_error' } })
    for (const bad of ['bad%20id', 'x'.repeat(65), '.', '..', 'a*b']) {
      // node:http sends the path as written: fetch would fold `..` out of it.
      const res = await rawPost(s, `/admin/identities/${bad}/${action}`)
      t.equal(res.status, 400, `${action}: ${bad}`)
      t.match(JSON.parse(res.body), { error: { code: 'COORD_PROVIDER_ID_INVALID' } })
    }
    const viaCli = await cli(`${action}-identity`, '--provider-id', 'nobody', '--json')
    t.equal(viaCli.code, 1)
    t.match(JSON.parse(viaCli.stdout), { error: { code: 'COORD_IDENTITY_NOT_PINNED' } })
    const badCli = await cli(`${action}-identity`, '--provider-id', 'bad id')
    t.equal(badCli.code, 2, 'a malformed id is a usage error, checked before anything is sent')
  }
  t.equal((await cli('revoke-identity')).code, 2, 'a missing --provider-id')

  for (const headers of [
    {} as Record<string, string>,
    { authorization: 'Bearer ' },
    { authorization: 'Bearer wrong-wrong-wrong-wrong' },
    { authorization: OPERATOR_KEY },
  ]) {
    for (const [method, path] of [
      ['GET', '/admin/identities'],
      ['POST', '/admin/identities/mac-1/revoke'],
      ['POST', '/admin/identities/mac-1/reset'],
      ['POST', '/admin/identities/bad%20id/revoke'],
    ] as const) {
      const res = await admin(s, method, path, headers)
      t.equal(res.status, 401, `${method} ${path} with ${JSON.stringify(headers).slice(0, 40)}`)
      t.match(await res.json(), { error: { code: 'COORD_UNAUTHORIZED' } })
    }
  }
  t.equal((await admin(s, 'GET', '/admin/identities/mac-1/revoke')).status, 405, 'POST only')
  t.match(await (await admin(s, 'GET', '/admin/identities')).json(), { identities: [{ provider_id: 'mac-1', revoked: false }] }, 'nothing revoked or reset')
  t.equal(client.ws.readyState, client.ws.OPEN, 'nothing kicked')
})

t.test('on the database, with no coordinator: the same operations, nothing to kick', async (t) => {
  const target = await cliTarget(t)
  const cli = (...args: string[]) => runCli(args, target.env)
  const key = generateIdentityKey()
  await withDb(target, async (db) => {
    await migrate(db)
    const r = await new IdentityStore(db, 5000).enrollNew({
      providerId: 'mac-1',
      name: 'mac',
      key: key.publicKey,
      now: Date.now(),
      ttlMs: 30 * DAY,
      healUnused: false,
    })
    t.ok(r.ok, 'pinned')
  })
  const list = await cli('list-identities', '--json')
  t.equal(list.code, 0, list.stderr)
  t.match(list.stderr, /no coordinator answered .*working on the database directly/)
  noKey(t, list.stdout, [key], 'list-identities on the database')
  t.match(JSON.parse(list.stdout), [{ provider_id: 'mac-1', generation: 1, key_fingerprint: keyFingerprint(key.publicKey) }])
  const blocked = await cli('revoke-identity', '--provider-id', 'mac-1')
  t.equal(blocked.code, 0, blocked.stderr)
  t.match(blocked.stdout, /1 token revoked; no coordinator answered, so no live session was closed\./)
  const reset = await cli('reset-identity', '--provider-id', 'mac-1', '--json')
  t.same(JSON.parse(reset.stdout), { provider_id: 'mac-1', action: 'reset', revoked_tokens: 0, kicked: null })
  const none = await cli('reset-identity', '--provider-id', 'mac-1')
  t.equal(none.code, 1)
  t.match(none.stderr, /no identity key is pinned for this provider_id/)
})
