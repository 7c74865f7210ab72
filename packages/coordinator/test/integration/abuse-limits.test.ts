import { sql } from 'kysely'
import t from 'tap'
import WebSocket from 'ws'
import { ManualClock } from '../../src/clock.js'
import type { Database } from '../../src/db/database.js'
import { defaultMintRules } from '../../src/limits/abuse-settings.js'
import { generateIdentityKey, keyJoin, openKeyHandshake, proofFor } from '../helpers/key-client.js'
import { ProviderClient, join } from '../helpers/provider-client.js'
import { startTestService, waitFor, type TestService } from '../helpers/service.js'

// Issue 15's abuse limits, each as the attack that got through before them. Tests speak from
// loopback addresses other than 127.0.0.1 (Linux routes all of 127/8 to lo) to act as many hosts.

const HOUR = 3_600_000
const MINT_LIMITED = { code: 4008, reason: 'mint_rate_limited' }

async function tokenRows(db: Database): Promise<number> {
  const r = await sql<{ n: string }>`SELECT count(*) AS n FROM provider_tokens`.execute(db.kysely)
  return Number(r.rows[0]?.n)
}

/** A tokenless hello from `from`; the session is closed again if admitted, and its removal awaited. */
async function mintFrom(s: TestService, id: string, from: string): Promise<{ admitted: boolean; close?: { code: number; reason: string }; token?: string }> {
  const r = await join(s.wsUrl, id, { localAddress: from })
  if (r.ack === undefined) return { admitted: false, close: r.close }
  await r.client.close()
  await waitFor(() => s.svc.ctx.registry.get(id) === undefined, `${id} leaving`)
  return { admitted: true, token: r.ack.assigned_provider_token }
}

t.test('attack: one address minting identities is stopped at its burst with 4008, and past it costs no statement', async (t) => {
  const clock = new ManualClock(Date.now())
  const s = await startTestService(t, { clock, limits: { mint: defaultMintRules } })
  const results = []
  for (let i = 0; i < 30; i++) results.push(await mintFrom(s, `flood-${i}`, '127.0.0.5'))
  const admitted = results.filter((r) => r.admitted)
  t.equal(admitted.length, 10, 'the address burst (10) was admitted')
  t.same(
    results.slice(10).map((r) => r.close),
    Array(20).fill(MINT_LIMITED),
    'every later tokenless hello closed 4008',
  )
  t.equal(await tokenRows(s.db), 10, 'no token row for a refused mint')
  const refusals = s.logs.events('admission.mint_rate_limited')
  t.equal(refusals.filter((e) => e.local === false).length, 1, 'one refusal asked the database')
  t.equal(refusals.filter((e) => e.local === true).length, 19, 'the other 19 were refused by the node gate, without a statement')
  t.equal(refusals[0]?.bucket, 'address')

  t.equal((await mintFrom(s, 'neighbour-1', '127.0.0.6')).admitted, true, 'another address in the same /24 is unaffected')

  clock.advance(HOUR / 10 + 1000)
  t.equal((await mintFrom(s, 'refilled-1', '127.0.0.5')).admitted, true, 'one token refilled after six minutes')
  t.same((await mintFrom(s, 'refilled-2', '127.0.0.5')).close, MINT_LIMITED, 'and only one')

  // A restart herd: every proven provider of the limited address reconnects with its bearer, three times.
  let bearerOk = 0
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < admitted.length; i++) {
      const r = await join(s.wsUrl, `flood-${i}`, { token: admitted[i]?.token as string, localAddress: '127.0.0.5' })
      if (r.ack?.auth_state === 'bearer_validated') bearerOk++
      await r.client.close()
      await waitFor(() => s.svc.ctx.registry.get(`flood-${i}`) === undefined, 'leaving')
    }
  }
  t.equal(bearerOk, 30, 'bearer reconnects are exempt')
})

t.test('the mint budget is one across coordinators sharing a database, and a fresh node (as after a restart) sees it', async (t) => {
  const mint = { ...defaultMintRules, mintPerAddress: null, mintPerPrefix: null, mintGlobal: { burst: 4, periodMs: HOUR } }
  const a = await startTestService(t, { limits: { mint } })
  const b = await startTestService(t, { limits: { mint }, db: a.db })
  for (let i = 0; i < 3; i++) t.equal((await mintFrom(a, `a-${i}`, `127.0.2.${i + 1}`)).admitted, true)
  t.equal((await mintFrom(b, 'b-0', '127.0.3.1')).admitted, true, 'the fourth, on the other node')
  t.same((await mintFrom(b, 'b-1', '127.0.4.1')).close, MINT_LIMITED, 'the fifth is refused, from yet another prefix')
  t.equal(b.logs.events('admission.mint_rate_limited')[0]?.local, false, 'by the shared bucket: node b had seen one mint')
  const fresh = await startTestService(t, { limits: { mint }, db: a.db })
  t.same((await mintFrom(fresh, 'c-0', '127.0.5.1')).close, MINT_LIMITED, 'a node with no memory of it is refused too')
  t.equal(await tokenRows(a.db), 4)
})

t.test('key recoveries are limited per provider_id, and only proofs that verify spend the budget', async (t) => {
  const mint = { ...defaultMintRules, mintPerAddress: null, mintPerPrefix: null, mintGlobal: null, recoveryPerId: { burst: 2, periodMs: HOUR } }
  const s = await startTestService(t, { limits: { mint } })
  const key = generateIdentityKey()
  const e = await keyJoin(s.wsUrl, 'mac-1', key, { intent: 'enroll' })
  t.equal(e.ack?.auth_state, 'key_proven')
  await e.client.close()
  await waitFor(() => s.svc.ctx.registry.get('mac-1') === undefined, 'leaving')
  // A stranger with junk proofs for the victim's id: refused, and the victim's budget is untouched.
  for (let i = 0; i < 5; i++) {
    const h = await openKeyHandshake(s.wsUrl, 'mac-1', key, { intent: 'recover' })
    h.client.send(proofFor(h, 'mac-1', key, 'recover', null, { signer: generateIdentityKey() }))
    t.equal((await h.client.closed).code, 4005)
  }
  for (let i = 0; i < 2; i++) {
    const r = await keyJoin(s.wsUrl, 'mac-1', key, { intent: 'recover' })
    t.equal(r.ack?.auth_state, 'key_proven', `recovery ${i + 1} admitted`)
    await r.client.close()
    await waitFor(() => s.svc.ctx.registry.get('mac-1') === undefined, 'leaving')
  }
  const third = await keyJoin(s.wsUrl, 'mac-1', key, { intent: 'recover' })
  t.same(third.close, MINT_LIMITED, 'the third recovery within the hour closes 4008')
  t.match(s.logs.events('admission.mint_rate_limited')[0]?.reason, /^recovery; retry in \d+ s$/)
})

t.test('a limiter store failure fails closed (4005), writing nothing', async (t) => {
  const s = await startTestService(t, { limits: { mint: defaultMintRules } })
  await sql`DROP FUNCTION take_rate_tokens(text[], double precision[], double precision[], boolean[], bigint, integer)`.execute(s.db.kysely)
  const r = await join(s.wsUrl, 'mint-1', { localAddress: '127.0.0.8' })
  t.same(r.close, { code: 4005, reason: 'invalid_token' })
  t.equal(await tokenRows(s.db), 0)
  t.equal(s.logs.events('admission.limiter_error').length, 1)
})

/** Silent upgrades from `from`, kept at `perAddress` open: each one closed is opened again. */
function flood(wsUrl: string, from: string[], perAddress: number): { stop: () => void; open: () => number } {
  let stopped = false
  let open = 0
  const sockets = new Set<WebSocket>()
  const connect = (addr: string): void => {
    if (stopped) return
    const ws = new WebSocket(wsUrl, { localAddress: addr, perMessageDeflate: false })
    sockets.add(ws)
    let wasOpen = false
    ws.on('open', () => {
      wasOpen = true
      open++
    })
    ws.on('error', () => undefined)
    ws.on('close', () => {
      sockets.delete(ws)
      if (wasOpen) open--
      // Refused (429): come back a moment later, as a flood pacing itself would; closed: at once.
      if (wasOpen) connect(addr)
      else setTimeout(() => connect(addr), 20).unref()
    })
  }
  for (const addr of from) for (let i = 0; i < perAddress; i++) connect(addr)
  return {
    stop: () => {
      stopped = true
      for (const ws of sockets) ws.terminate()
    },
    open: () => open,
  }
}

t.test('attack: 32 addresses flooding silent upgrades cannot keep a provider from another prefix out', async (t) => {
  const s = await startTestService(t, { limits: { maxPendingConnections: 256, maxPendingPerIp: 8 } })
  const attackers = Array.from({ length: 32 }, (_, i) => `127.0.0.${10 + i}`)
  const f = flood(s.wsUrl, attackers, 8)
  t.teardown(f.stop)
  await waitFor(() => f.open() === 256, 'the flood holding every pending slot', 20_000)
  const times: number[] = []
  for (let i = 0; i < 10; i++) {
    const started = performance.now()
    const r = await join(s.wsUrl, `victim-${i}`, { localAddress: `127.0.1.${i + 1}` })
    times.push(performance.now() - started)
    t.equal(r.ack?.auth_state, 'self_minted', `provider ${i + 1} from 127.0.1.0/24 admitted`)
    await r.client.close()
  }
  t.ok(Math.max(...times) < 1000, `each within 1 s (slowest ${Math.round(Math.max(...times))} ms)`)
  t.ok(f.open() >= 240, 'the flood was still holding its slots')
})

t.test('attack: one address filling the pool with self-minted identities stops at its per-address caps', async (t) => {
  const s = await startTestService(t, { limits: { maxUnprovenPerAddress: 3, maxSessionsPerAddress: 5 } })
  const held: ProviderClient[] = []
  t.teardown(() => held.forEach((c) => c.ws.terminate()))
  for (let i = 0; i < 3; i++) {
    const r = await join(s.wsUrl, `self-${i}`, { localAddress: '127.0.0.50' })
    t.equal(r.ack?.auth_state, 'self_minted')
    held.push(r.client)
  }
  const fourth = await join(s.wsUrl, 'self-3', { localAddress: '127.0.0.50' })
  t.same(fourth.close, { code: 4429, reason: 'prefix_full' }, 'the fourth unproven session is refused')
  t.equal(await tokenRows(s.db), 3, 'before minting')
  // Proven sessions count only toward the overall cap.
  for (let i = 0; i < 3; i++) {
    const issued = await s.svc.ctx.tokens.issue(`proven-${i}`, 'host', 'operator_issued')
    const r = await join(s.wsUrl, `proven-${i}`, { token: issued.token, localAddress: '127.0.0.50' })
    if (i < 2) {
      t.equal(r.ack?.auth_state, 'bearer_validated')
      held.push(r.client)
    } else t.same(r.close, { code: 4429, reason: 'prefix_full' }, 'the sixth session of the address is refused')
  }
  // A provider replacing its own session is not a new one.
  const again = await join(s.wsUrl, 'self-0', { localAddress: '127.0.0.50' })
  t.equal(again.close?.code, 4005, 'a tokenless claim on a live self-minted id is refused by TOFU, not by the cap')
  const other = await join(s.wsUrl, 'elsewhere-0', { localAddress: '127.0.0.51' })
  t.equal(other.ack?.auth_state, 'self_minted', 'another address is unaffected')
  held.push(other.client)
})

t.test('attack: a hello stuck behind its id (a hung store) is closed at the admission deadline, 4009, and writes nothing', async (t) => {
  const s = await startTestService(t, { limits: { admissionDeadlineMs: 2000 } })
  let unblock!: () => void
  const blocked = new Promise<void>((resolve) => (unblock = resolve))
  // Something holding the id's admission lock and never finishing, as an admission would on a frozen store.
  const holder = s.svc.ctx.admissionLock.run('stuck-1', () => blocked)
  const started = performance.now()
  const r = await join(s.wsUrl, 'stuck-1', { localAddress: '127.0.0.60' })
  const elapsed = performance.now() - started
  t.same(r.close, { code: 4009, reason: 'admission_timeout' })
  t.ok(elapsed >= 1900, `not before the deadline (${Math.round(elapsed)} ms)`)
  unblock()
  await holder
  await waitFor(() => s.logs.events('admission.abandoned').length === 1, 'the queued admission giving up')
  t.equal(await tokenRows(s.db), 0, 'the queued admission did no store work once its socket was gone')

  const h = await openKeyHandshake(s.wsUrl, 'mac-1', generateIdentityKey(), { intent: 'enroll' })
  const ttl = h.challenge?.expires_in_ms as number
  t.ok(ttl > 0 && ttl <= 2000, `the challenge gives the proof what is left of the deadline (${ttl} ms)`)
  t.same(await h.client.closed, { code: 4009, reason: 'admission_timeout' }, 'no proof: closed at the deadline')
})
