import { randomBytes } from 'node:crypto'
import net from 'node:net'
import t from 'tap'
import { TokenStore } from '../../src/tokens/token-store.js'
import { ProviderClient, join } from '../helpers/provider-client.js'
import { startTestService, waitFor, type TestService } from '../helpers/service.js'

// Attacks found by the adversarial review of the admission path, kept as regression tests.

/** Sends one raw upgrade request and returns the status line (or '' if the socket just closed). */
async function rawUpgrade(s: TestService, target: string, headers: string): Promise<string> {
  const raw = net.connect(Number(new URL(s.url).port), '127.0.0.1')
  let got = ''
  raw.on('data', (d) => (got += d.toString()))
  raw.on('error', () => undefined)
  await new Promise<void>((r) => raw.once('connect', () => r()))
  raw.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n${headers}\r\n`)
  await new Promise<void>((r) => raw.once('close', () => r()))
  return got.split('\r\n')[0] ?? ''
}

const WS_HEADERS = 'Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n'

t.test('request targets that URL cannot parse are refused 400 and do not crash the process', async (t) => {
  const s = await startTestService(t)
  for (const target of ['//', '///', '//[', '//a%zz']) {
    t.equal(await rawUpgrade(s, target, WS_HEADERS), 'HTTP/1.1 400 Bad Request', target)
  }
  t.equal((await fetch(`${s.url}/healthz`)).status, 200, 'still serving')
})

t.test('a handshake that ws aborts gives its pre-auth slot back', async (t) => {
  const s = await startTestService(t, { limits: { maxPendingPerIp: 2, maxPendingConnections: 4 } })
  t.match(await rawUpgrade(s, '/ws/provider', 'Upgrade: websocket\r\n'), /400/, 'no key')
  t.match(
    await rawUpgrade(s, '/ws/provider', 'Upgrade: websocket\r\nSec-WebSocket-Version: 12\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n'),
    /400/,
    'bad version',
  )
  t.match(await rawUpgrade(s, '/ws/provider', 'Upgrade: websocket\r\n'), /400/, 'no key, again')
  const c = await ProviderClient.connect(s.wsUrl) // would be 429 if the slots had leaked
  c.hello('after-aborts')
  t.equal((await c.outcome()).ack?.auth_state, 'self_minted')
})

t.test('a pre-auth frame larger than the frame bound is refused on its declared size', async (t) => {
  const s = await startTestService(t, { limits: { helloTimeoutMs: 3000 } })
  const c = await ProviderClient.connect(s.wsUrl)
  const header = Buffer.alloc(14)
  header[0] = 0x81 // FIN, text
  header[1] = 0x80 | 127 // masked, 64-bit length
  header.writeBigUInt64BE(BigInt(2 * 1024 * 1024), 2)
  ;(c.ws as unknown as { _socket: net.Socket })._socket.write(Buffer.concat([header, randomBytes(32 * 1024)]))
  t.equal((await c.closed).code, 1009, 'closed as too big at once, not after the hello timeout')
})

t.test('a store that stops answering fails closed within the store timeout', async (t) => {
  const s = await startTestService(t, { limits: { storeTimeoutMs: 300, helloTimeoutMs: 5000 } })
  const { token } = await new TokenStore(s.db).issue('keyed', 'k', 'operator_issued')
  // Another session holds an exclusive lock on the table: every token statement blocks.
  let unlock!: () => void
  const locked = new Promise<void>((r) => (unlock = r))
  let held!: () => void
  const holding = new Promise<void>((r) => (held = r))
  const lockTx = s.db.rawTransaction(async (tx) => {
    await tx.exec('LOCK TABLE provider_tokens IN ACCESS EXCLUSIVE MODE')
    held()
    await locked
  })
  await holding
  t.same((await join(s.wsUrl, 'keyed', { token })).close, { code: 4005, reason: 'invalid_token' }, 'bearer check')
  t.same((await join(s.wsUrl, 'newcomer')).close, { code: 4005, reason: 'invalid_token' }, 'tokenless admission')
  t.equal((await s.poolz()).summary.total, 0, 'nothing entered the pool')
  unlock()
  await lockTx
  t.equal((await join(s.wsUrl, 'keyed', { token })).ack?.auth_state, 'bearer_validated', 'recovers once the store answers')
})

t.test('a claim that hangs up while queued costs no store work and cannot heal a token away', async (t) => {
  const s = await startTestService(t)
  const lock = s.svc.ctx.admissionLock
  const victim = await join(s.wsUrl, 'victim')
  const token = victim.ack?.assigned_provider_token as string
  await victim.client.close() // unproven and momentarily offline: the self-heal window
  await waitFor(async () => (await s.poolz()).summary.total === 0, 'victim removal')

  let release!: () => void
  const held = lock.run('victim', () => new Promise<void>((r) => (release = r)))
  const attacker = await ProviderClient.connect(s.wsUrl)
  attacker.hello('victim')
  await waitFor(() => lock.waiting('victim') === 1, "the attacker's hello is queued")
  await attacker.close()
  release()
  await held
  await waitFor(() => s.logs.events('admission.abandoned').length === 1, 'abandoned admission')
  t.equal(s.logs.events('admission.self_heal').length, 0, 'no heal ran for a departed claim')
  const active = await new TokenStore(s.db).list({ activeOnly: true })
  t.same(
    active.map((r) => r.tokenPrefix),
    [token.slice(0, 12)],
    "the victim's token is still the active one",
  )
  t.equal((await join(s.wsUrl, 'victim', { token })).ack?.auth_state, 'bearer_validated')
})

t.test('hellos queued for one provider_id are capped', async (t) => {
  const s = await startTestService(t, { limits: { maxQueuedAdmissionsPerId: 2 } })
  const lock = s.svc.ctx.admissionLock
  let release!: () => void
  const held = lock.run('flooded', () => new Promise<void>((r) => (release = r)))
  const queued = await Promise.all([0, 1].map(() => ProviderClient.connect(s.wsUrl)))
  for (const c of queued) c.hello('flooded')
  await waitFor(() => lock.waiting('flooded') === 2, 'two hellos queued')
  const third = await join(s.wsUrl, 'flooded')
  t.same(third.close, { code: 4429, reason: 'admission_busy' })
  release()
  await held
  const outcomes = await Promise.all(queued.map((c) => c.outcome()))
  t.equal(outcomes.filter((o) => o.ack?.assigned_provider_token).length, 1, 'the queued hellos are decided normally')
})
