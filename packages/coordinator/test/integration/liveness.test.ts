import { heartbeat } from '@poolcoord/protocol'
import t from 'tap'
import { ManualClock } from '../../src/clock.js'
import { ProviderClient, join } from '../helpers/provider-client.js'
import { startTestService, waitFor } from '../helpers/service.js'

t.test('a session silent for the idle timeout is closed 4010; any inbound frame keeps it', async (t) => {
  const clock = new ManualClock()
  const s = await startTestService(t, { clock })
  const quiet = await join(s.wsUrl, 'quiet')
  const chatty = await join(s.wsUrl, 'chatty')
  clock.advance(60_000)
  chatty.client.send(heartbeat('ready', 2, 1))
  await waitFor(async () => (await s.poolz()).pool.some((r) => r.provider_id === 'chatty' && r.last_heartbeat_at !== null), 'heartbeat applied')
  clock.advance(30_000) // quiet: 90 s silent; chatty: 30 s since its heartbeat
  t.equal(s.svc.sweepIdle(), 1)
  t.same(await quiet.client.closed, { code: 4010, reason: 'idle_timeout' })
  const pool = (await s.poolz()).pool
  t.same(
    pool.map((r) => r.provider_id),
    ['chatty'],
  )
  t.equal(pool[0]?.slots_free, 1, 'the heartbeat updated the slots')
})

t.test('heartbeats drive status; a draining provider is not routable', async (t) => {
  const s = await startTestService(t)
  const p = await join(s.wsUrl, 'p', { hello: { supported_models: ['qwen-7b'] } })
  p.client.send(heartbeat('draining', 2, 2, { model_id: 'llama-3-8b', supported_models: ['mistral-7b'] }))
  await waitFor(async () => (await s.poolz()).pool[0]?.status === 'draining', 'draining applied')
  const row = (await s.poolz()).pool[0]
  t.equal(row?.routing_eligible, false)
  t.equal(row?.routing_ineligible_reason, 'not_ready')
  t.same(row?.models, ['llama-3-8b', 'mistral-7b'])
  // Out of bounds on purpose: more free slots than slots.
  p.client.send(heartbeat('ready', 2, 3))
  t.same(await p.client.closed, { code: 4003, reason: 'invalid_frame: slots_free' }, 'an out-of-bounds heartbeat closes the session')
  await waitFor(async () => (await s.poolz()).summary.total === 0, 'session removal')
})

t.test('hello must arrive in time and be well formed', async (t) => {
  const s = await startTestService(t, { limits: { helloTimeoutMs: 200, maxHelloBytes: 1024 } })
  const silent = await ProviderClient.connect(s.wsUrl)
  t.same(await silent.closed, { code: 4002, reason: 'hello_timeout' })

  const cases: Array<[string, unknown, { code: number; reason: string }]> = [
    ['not a hello', { type: 'heartbeat' }, { code: 4000, reason: 'unrecognized_first_frame' }],
    ['newer protocol', { type: 'hello', version: 2 }, { code: 4004, reason: 'unsupported_version' }],
    ['bad provider_id', { type: 'hello', version: 1, provider_id: 'has space' }, { code: 4001, reason: 'invalid_hello: provider_id' }],
    ['oversized hello', { type: 'hello', version: 1, pad: 'x'.repeat(2000) }, { code: 4001, reason: 'invalid_hello: size' }],
  ]
  for (const [name, frame, expected] of cases) {
    const c = await ProviderClient.connect(s.wsUrl)
    c.sendRaw(frame)
    t.same(await c.closed, expected, name)
  }
  const text = await ProviderClient.connect(s.wsUrl)
  text.ws.send('not json at all')
  t.same(await text.closed, { code: 4000, reason: 'unrecognized_first_frame' }, 'not JSON')
  t.equal((await s.poolz()).summary.total, 0)
})

t.test('pre-auth connections are bounded per peer address', async (t) => {
  const s = await startTestService(t, { limits: { maxPendingPerIp: 2 } })
  const a = await ProviderClient.connect(s.wsUrl)
  await ProviderClient.connect(s.wsUrl)
  await t.rejects(ProviderClient.connect(s.wsUrl), /upgrade refused: 429/, 'the third pending connection is refused')
  a.hello('a')
  t.equal((await a.outcome()).ack?.auth_state, 'self_minted')
  const c = await ProviderClient.connect(s.wsUrl)
  t.ok(c, 'an admitted connection frees its pending slot')
})

t.test('the session cap closes further admissions 4429', async (t) => {
  const s = await startTestService(t, { limits: { maxSessions: 1 } })
  t.equal((await join(s.wsUrl, 'one')).ack?.auth_state, 'self_minted')
  t.same((await join(s.wsUrl, 'two')).close, { code: 4429, reason: 'pool_full' })
})
