import { sql } from 'kysely'
import t from 'tap'
import { ManualClock } from '../../src/clock.js'
import type { Database } from '../../src/db/database.js'
import { TokenStore } from '../../src/tokens/token-store.js'
import { generateIdentityKey, keyJoin, openKeyHandshake, proofFor } from '../helpers/key-client.js'
import { ProviderClient, join } from '../helpers/provider-client.js'
import { startTestService, waitFor, type TestService } from '../helpers/service.js'
import { keyFingerprint } from '@poolcoord/protocol'

const DAY = 86_400_000
const REFUSED = { code: 4005, reason: 'invalid_token' }

/** Every row of both credential tables, for "a refused attempt changes nothing in the store". */
async function storeState(db: Database): Promise<unknown> {
  const tokens = await sql`SELECT id, provider_id, last_used_at, revoked_at, expires_at, grace_until FROM provider_tokens ORDER BY id`.execute(db.kysely)
  const keys = await sql`SELECT * FROM provider_identity_keys ORDER BY provider_id`.execute(db.kysely)
  return JSON.parse(JSON.stringify({ tokens: tokens.rows, keys: keys.rows }))
}

async function gone(s: TestService, client: ProviderClient): Promise<void> {
  await client.close()
  await waitFor(async () => (await s.poolz()).summary.total === 0, 'session removal')
}

/** A provider enrolled with a key: returns its token. */
async function enrolled(s: TestService, id: string, key = generateIdentityKey()) {
  const e = await keyJoin(s.wsUrl, id, key, { intent: 'enroll' })
  if (e.ack === undefined) throw new Error(`enroll refused: ${JSON.stringify(e.close)}`)
  await gone(s, e.client)
  return { key, token: e.ack.assigned_provider_token as string }
}

t.test('enroll pins the key and mints a token; connect proves both; /poolz shows a fingerprint', async (t) => {
  const s = await startTestService(t)
  const key = generateIdentityKey()
  const e = await keyJoin(s.wsUrl, 'mac-1', key, { intent: 'enroll' })
  t.equal(e.challenge?.key_state, 'unknown', 'nothing pinned yet')
  t.ok(Number.isInteger(e.challenge?.issued_at), 'issued_at is an integer')
  t.equal(e.challenge?.origin, new URL(s.wsUrl).origin, 'the default origin is where the coordinator listens')
  t.equal(e.ack?.auth_state, 'key_proven')
  t.equal(e.ack?.identity_generation, 1)
  const token = e.ack?.assigned_provider_token as string
  t.match(token, /^[0-9a-f]{64}$/)
  const row = (await s.poolz()).pool[0]
  t.same(row?.identity, { pinned: true, generation: 1, key_fingerprint: keyFingerprint(key.publicKey) })
  t.equal(row?.routing_eligible, true, `routable (${row?.routing_ineligible_reason})`)
  t.equal((await s.poolz()).summary.by_auth_state.key_proven, 1)
  await gone(s, e.client)

  const c = await keyJoin(s.wsUrl, 'mac-1', key, { intent: 'connect', token })
  t.equal(c.challenge?.key_state, 'pinned')
  t.equal(c.ack?.auth_state, 'key_proven')
  t.notOk('assigned_provider_token' in (c.ack ?? {}), 'a fresh token is not renewed')
  const [tk] = await new TokenStore(s.db).list()
  t.ok(tk?.expiresAt, 'a key-pinned id’s token expires')
  t.equal(s.logs.events('admission.key_enrolled').length, 1)
  t.equal(s.logs.events('admission.key_proven').length, 1)
})

t.test('lost token, key kept: recover revokes the old token and mints one, with no operator', async (t) => {
  const s = await startTestService(t)
  const { key, token } = await enrolled(s, 'mac-1')
  const r = await keyJoin(s.wsUrl, 'mac-1', key, { intent: 'recover' })
  t.equal(r.ack?.auth_state, 'key_proven')
  const fresh = r.ack?.assigned_provider_token as string
  t.match(fresh, /^[0-9a-f]{64}$/)
  t.not(fresh, token)
  await gone(s, r.client)
  const old = await join(s.wsUrl, 'mac-1', { token })
  t.same(old.close, REFUSED, 'the lost token no longer validates')
  const again = await keyJoin(s.wsUrl, 'mac-1', key, { intent: 'connect', token: fresh })
  t.equal(again.ack?.auth_state, 'key_proven', 'the recovered token works')
  t.equal((await new TokenStore(s.db).list({ activeOnly: true })).length, 1)
})

t.test('attack: a proof replayed on a new connection is refused', async (t) => {
  const s = await startTestService(t)
  const { key } = await enrolled(s, 'mac-1')
  const h = await openKeyHandshake(s.wsUrl, 'mac-1', key, { intent: 'recover' })
  const captured = proofFor(h, 'mac-1', key, 'recover', null)
  h.client.ws.terminate() // the victim's connection dies before the proof is used
  const before = await storeState(s.db)
  const thief = await openKeyHandshake(s.wsUrl, 'mac-1', generateIdentityKey(), { intent: 'recover', extra: { identity_key: key.publicKey } })
  t.ok(thief.challenge, 'the replayer gets a challenge of its own')
  thief.client.send(captured)
  t.same((await thief.client.outcome()).close, REFUSED)
  t.same(await storeState(s.db), before, 'nothing changed in the store')
  t.equal(s.logs.events('admission.proof_invalid').length, 1)
})

t.test('attack: the same proof sent twice on its own connection: the nonce is consumed by the first', async (t) => {
  const s = await startTestService(t)
  const { key } = await enrolled(s, 'mac-1')
  const h = await openKeyHandshake(s.wsUrl, 'mac-1', key, { intent: 'recover' })
  const wrong = proofFor(h, 'mac-1', key, 'recover', null, { origin: 'ws://elsewhere:1' })
  h.client.send(wrong)
  h.client.send(proofFor(h, 'mac-1', key, 'recover', null))
  t.same((await h.client.outcome()).close, REFUSED, 'a failed proof ends the connection; no second try')
})

t.test('attack: an expired challenge is refused (coordinator clock)', async (t) => {
  const clock = new ManualClock(Date.now())
  // A deadline past 30 s, so that the challenge's own limit is the one that bites.
  const s = await startTestService(t, { clock, limits: { admissionDeadlineMs: 60_000 } })
  const { key } = await enrolled(s, 'mac-1')
  const before = await storeState(s.db)
  const h = await openKeyHandshake(s.wsUrl, 'mac-1', key, { intent: 'recover' })
  t.equal(h.challenge?.expires_in_ms, 30_000)
  clock.advance(30_001)
  h.client.send(proofFor(h, 'mac-1', key, 'recover', null))
  t.same((await h.client.outcome()).close, { code: 4009, reason: 'admission_timeout' }, 'a timeout, not a refused credential')
  t.same(await storeState(s.db), before)
  t.equal(s.logs.events('admission.challenge_expired').length, 1)
})

t.test('attack: a proof for another origin (a relaying coordinator) is refused', async (t) => {
  const s = await startTestService(t)
  const { key } = await enrolled(s, 'mac-1')
  const h = await openKeyHandshake(s.wsUrl, 'mac-1', key, { intent: 'recover' })
  h.client.send(proofFor(h, 'mac-1', key, 'recover', null, { origin: 'wss://evil.example.com' }))
  t.same((await h.client.outcome()).close, REFUSED)
})

t.test('attack: auth_init altered after signing (models, next key) is refused', async (t) => {
  const s = await startTestService(t)
  const { key, token } = await enrolled(s, 'mac-1')
  const h = await openKeyHandshake(s.wsUrl, 'mac-1', key, { intent: 'connect', token, extra: { max_concurrency: 64 } })
  // The proof signs what the agent meant to send; a middlebox changed max_concurrency on the way.
  const meant = h.initText.replace('"max_concurrency":64', '"max_concurrency":2')
  t.not(meant, h.initText)
  h.client.send(proofFor(h, 'mac-1', key, 'connect', null, { initText: meant }))
  t.same((await h.client.outcome()).close, REFUSED)
})

t.test('attack: a tokenless v1 claim on a pinned id is refused and never healed', async (t) => {
  const s = await startTestService(t)
  const { token } = await enrolled(s, 'mac-1')
  const before = await storeState(s.db)
  const claim = await join(s.wsUrl, 'mac-1')
  t.same(claim.close, REFUSED)
  t.same(await storeState(s.db), before, 'the enrolled token was not revoked (no self-heal)')
  t.equal(s.logs.events('admission.key_required').length, 1)
  const v2claim = await keyJoin(s.wsUrl, 'mac-1', generateIdentityKey(), { intent: 'enroll' })
  t.same(v2claim.close, REFUSED, 'a tokenless enroll with another key is refused too')
  t.same(await storeState(s.db), before)
  t.ok(token)
})

t.test('attack: a stolen bearer without the key', async (t) => {
  const s = await startTestService(t)
  const { token } = await enrolled(s, 'mac-1')
  const v1 = await join(s.wsUrl, 'mac-1', { token })
  t.same(v1.close, REFUSED, 'a v1 bearer cannot skip the key')
  // Presenting a valid bearer stamps last_used_at at the upgrade (the one validate-and-mark
  // statement, before the proof exists); everything else must stay as it was.
  const state = async () => JSON.stringify(await storeState(s.db)).replace(/"last_used_at":"[^"]*"/g, '')
  const before = await state()
  for (const intent of ['connect', 'enroll', 'rotate'] as const) {
    const mine = generateIdentityKey()
    const r = await keyJoin(s.wsUrl, 'mac-1', mine, { intent, token, ...(intent === 'rotate' ? { next: generateIdentityKey() } : {}) })
    t.same(r.close, REFUSED, `${intent} with the thief's own key`)
  }
  t.same(await state(), before, 'nothing written')
})

t.test('attack: recovery by the wrong key changes nothing', async (t) => {
  const s = await startTestService(t)
  await enrolled(s, 'mac-1')
  const before = await storeState(s.db)
  const r = await keyJoin(s.wsUrl, 'mac-1', generateIdentityKey(), { intent: 'recover' })
  t.same(r.close, REFUSED)
  t.same(await storeState(s.db), before)
  t.equal(s.logs.events('admission.key_mismatch').length, 1)
})

t.test('revoke-identity blocks connect and recovery; reset-identity lets the id enroll afresh', async (t) => {
  const s = await startTestService(t)
  const { key, token } = await enrolled(s, 'mac-1')
  const ctx = s.svc.ctx
  t.same(await ctx.identities.revoke('mac-1'), { revokedTokens: 1, alreadyRevoked: false })
  t.same((await keyJoin(s.wsUrl, 'mac-1', key, { intent: 'recover' })).close, REFUSED, 'no recovery')
  t.same((await keyJoin(s.wsUrl, 'mac-1', key, { intent: 'connect', token })).close, REFUSED, 'no connect')
  t.same((await join(s.wsUrl, 'mac-1')).close, REFUSED, 'no tokenless v1 either')
  t.equal(s.logs.events('admission.identity_revoked').length, 1)
  t.same(await ctx.identities.reset('mac-1'), { revokedTokens: 0 })
  const fresh = generateIdentityKey()
  const e = await keyJoin(s.wsUrl, 'mac-1', fresh, { intent: 'enroll' })
  t.equal(e.ack?.auth_state, 'key_proven', 'enrolled afresh')
  t.same((await s.poolz()).pool[0]?.identity.key_fingerprint, keyFingerprint(fresh.publicKey))
})

t.test('token renewal with grace, and expiry (fake clock)', async (t) => {
  const clock = new ManualClock(Date.now())
  const s = await startTestService(t, { clock })
  const { key, token: first } = await enrolled(s, 'mac-1')
  clock.advance(16 * DAY) // past half of the 30-day TTL
  const renew = await keyJoin(s.wsUrl, 'mac-1', key, { intent: 'connect', token: first })
  t.equal(renew.ack?.auth_state, 'key_proven')
  const second = renew.ack?.assigned_provider_token as string
  t.match(second, /^[0-9a-f]{64}$/, 'the successor comes in the ack')
  await gone(s, renew.client)
  const tokens = await new TokenStore(s.db).list()
  t.ok(tokens[0]?.graceUntil, 'the old token is in grace')

  // The agent lost the successor: the old token, in grace, still admits, and a new successor replaces the lost one.
  clock.advance(5 * 60_000)
  const inGrace = await keyJoin(s.wsUrl, 'mac-1', key, { intent: 'connect', token: first })
  t.equal(inGrace.ack?.auth_state, 'key_proven')
  const third = inGrace.ack?.assigned_provider_token as string
  t.match(third, /^[0-9a-f]{64}$/)
  await gone(s, inGrace.client)
  t.same((await join(s.wsUrl, 'mac-1', { token: second })).close, REFUSED, 'the undelivered successor was revoked')

  clock.advance(6 * 60_000) // the grace (10 min) is over
  const late = await ProviderClient.connect(s.wsUrl, { token: first, subprotocol: 'poolcoord.v2' })
  t.same((await late.outcome()).close, REFUSED, 'after grace the old token is refused at the upgrade')
  const ok = await keyJoin(s.wsUrl, 'mac-1', key, { intent: 'connect', token: third })
  t.equal(ok.ack?.auth_state, 'key_proven')
  t.notOk('assigned_provider_token' in (ok.ack ?? {}))
  await gone(s, ok.client)

  clock.advance(31 * DAY) // past the TTL
  const expired = await ProviderClient.connect(s.wsUrl, { token: third, subprotocol: 'poolcoord.v2' })
  t.same((await expired.outcome()).close, REFUSED, 'an expired token is refused')
  const back = await keyJoin(s.wsUrl, 'mac-1', key, { intent: 'recover' })
  t.equal(back.ack?.auth_state, 'key_proven', 'the key recovers after expiry')
  t.equal((await new TokenStore(s.db).list({ activeOnly: true })).filter((r) => r.graceUntil === null).length, 1)
})

t.test('key rotation: generation compare-and-set, the previous key may connect for 7 days, never recover', async (t) => {
  const clock = new ManualClock(Date.now())
  const s = await startTestService(t, { clock })
  const { key, token } = await enrolled(s, 'mac-1')
  const next = generateIdentityKey()
  t.same((await keyJoin(s.wsUrl, 'mac-1', key, { intent: 'rotate', next })).close, REFUSED, 'rotate needs the bearer too')
  const r = await keyJoin(s.wsUrl, 'mac-1', key, { intent: 'rotate', next, token })
  t.equal(r.ack?.auth_state, 'key_proven')
  t.equal(r.ack?.identity_generation, 2)
  t.same((await s.poolz()).pool[0]?.identity, { pinned: true, generation: 2, key_fingerprint: keyFingerprint(next.publicKey) })
  await gone(s, r.client)
  const replay = await keyJoin(s.wsUrl, 'mac-1', key, { intent: 'rotate', next, token })
  t.equal(replay.ack?.identity_generation, 2, 'announcing the same rotation again is admitted and changes nothing')
  await gone(s, replay.client)
  const stale = await keyJoin(s.wsUrl, 'mac-1', key, { intent: 'rotate', next: generateIdentityKey(), token })
  t.same(stale.close, REFUSED, 'the previous key cannot choose another next key')
  t.same((await keyJoin(s.wsUrl, 'mac-1', key, { intent: 'recover' })).close, REFUSED, 'the previous key cannot recover')
  const prev = await keyJoin(s.wsUrl, 'mac-1', key, { intent: 'connect', token })
  t.equal(prev.ack?.auth_state, 'key_proven', 'the previous key still connects')
  await gone(s, prev.client)
  clock.advance(7 * DAY + 1)
  t.same((await keyJoin(s.wsUrl, 'mac-1', key, { intent: 'connect', token })).close, REFUSED, 'not after 7 days')
  t.equal((await keyJoin(s.wsUrl, 'mac-1', next, { intent: 'recover' })).ack?.auth_state, 'key_proven', 'the current key recovers')
})

t.test('two simultaneous recoveries leave one active token', async (t) => {
  const s = await startTestService(t)
  const { key } = await enrolled(s, 'mac-1')
  const [a, b] = await Promise.all([keyJoin(s.wsUrl, 'mac-1', key, { intent: 'recover' }), keyJoin(s.wsUrl, 'mac-1', key, { intent: 'recover' })])
  t.ok(a.ack !== undefined || b.ack !== undefined, 'at least one recovered')
  const active = (await new TokenStore(s.db).list({ activeOnly: true })).filter((r) => r.graceUntil === null)
  t.equal(active.length, 1)
})

t.test('a v1 first frame on a v2 upgrade, and auth_init without the subprotocol, are refused 4000', async (t) => {
  const s = await startTestService(t)
  const v1OnV2 = await ProviderClient.connect(s.wsUrl, { subprotocol: 'poolcoord.v2' })
  t.equal(v1OnV2.ws.protocol, 'poolcoord.v2', 'the coordinator selects poolcoord.v2')
  v1OnV2.hello('mac-1')
  t.same((await v1OnV2.outcome()).close, { code: 4000, reason: 'unrecognized_first_frame' })
  const noSub = await openKeyHandshake(s.wsUrl, 'mac-1', generateIdentityKey(), { intent: 'enroll', subprotocol: '' })
  t.equal(noSub.client.ws.protocol, '', 'no subprotocol offered, none selected')
  t.same(await noSub.client.closed, { code: 4000, reason: 'unrecognized_first_frame' })
})

t.test('require_provider_tokens: a tokenless v2 connect may only recover; enrolling needs an issued bearer', async (t) => {
  const s = await startTestService(t, { requireProviderTokens: true })
  const key = generateIdentityKey()
  t.same((await keyJoin(s.wsUrl, 'mac-1', key, { intent: 'enroll' })).close, REFUSED)
  const v1 = await ProviderClient.connect(s.wsUrl)
  t.same(await v1.closed, REFUSED, 'a tokenless v1 upgrade is still refused')
  const issued = await new TokenStore(s.db).issue('mac-1', 'mac', 'operator_issued')
  const e = await keyJoin(s.wsUrl, 'mac-1', key, { intent: 'enroll', token: issued.token })
  t.equal(e.ack?.auth_state, 'key_proven', 'an issued bearer pins the key in place')
  t.notOk('assigned_provider_token' in (e.ack ?? {}), 'the issued token carries on')
  await gone(s, e.client)
  const r = await keyJoin(s.wsUrl, 'mac-1', key, { intent: 'recover' })
  t.equal(r.ack?.auth_state, 'key_proven', 'a tokenless recover passes')
  t.equal(s.logs.events('admission.key_pinned_in_place').length, 1)
})

t.test('a v1 provider pins in place: bearer then enroll; its token then expires like any key-pinned one', async (t) => {
  const s = await startTestService(t)
  const v1 = await join(s.wsUrl, 'old-mac')
  const token = v1.ack?.assigned_provider_token as string
  await gone(s, v1.client)
  const key = generateIdentityKey()
  const e = await keyJoin(s.wsUrl, 'old-mac', key, { intent: 'enroll', token })
  t.equal(e.ack?.auth_state, 'key_proven')
  await gone(s, e.client)
  t.same((await join(s.wsUrl, 'old-mac', { token })).close, REFUSED, 'from now on the v1 bearer alone is refused')
  const [row] = await new TokenStore(s.db).list({ activeOnly: true })
  t.ok(row?.expiresAt, 'the token got its expiry')
})

t.test('no key, signature or token in logs or /poolz', async (t) => {
  const s = await startTestService(t)
  const key = generateIdentityKey()
  const h = await openKeyHandshake(s.wsUrl, 'mac-1', key, { intent: 'enroll' })
  const proof = proofFor(h, 'mac-1', key, 'enroll', null)
  h.client.send(proof)
  const out = await h.client.outcome()
  const token = out.ack?.assigned_provider_token as string
  const bad = await keyJoin(s.wsUrl, 'mac-1', generateIdentityKey(), { intent: 'recover' })
  t.ok(bad.close)
  const text = JSON.stringify(s.logs.lines) + JSON.stringify(await s.poolz())
  for (const [what, secret] of [
    ['public key', key.publicKey],
    ['private seed', key.privateSeed],
    ['signature', proof.signature],
    ['token', token],
    ['nonce', h.challenge?.nonce as string],
  ]) {
    t.notOk(text.includes(secret), `no ${what}`)
  }
})

t.test('revoke-identity between the upgrade and the proof: the pin read at the upgrade is not trusted', async (t) => {
  const s = await startTestService(t)
  const { key, token } = await enrolled(s, 'mac-1')
  const h = await openKeyHandshake(s.wsUrl, 'mac-1', key, { intent: 'connect', token })
  t.equal(h.challenge?.key_state, 'pinned')
  await s.svc.ctx.identities.revoke('mac-1')
  h.client.send(proofFor(h, 'mac-1', key, 'connect', null))
  t.same((await h.client.outcome()).close, REFUSED)
  t.equal(s.logs.events('admission.identity_conflict').length, 1, 'the guarded read found the revocation')
  t.equal((await s.poolz()).summary.total, 0)
})
