import t from 'tap'
import { Service } from '../../src/service.js'
import { apiError, buyer } from '../helpers/buyer.js'
import { OPERATOR_KEY, startTestService, waitFor, type TestService } from '../helpers/service.js'
import { TestProvider, answer } from '../helpers/test-provider.js'
import { envToConfig } from '../../src/config.js'

const messages = [{ role: 'user' as const, content: 'hi' }]
const auth = { authorization: `Bearer ${OPERATOR_KEY}` }

function admin(s: TestService, method: 'GET' | 'POST', path: string, body?: unknown, headers: Record<string, string> = auth) {
  return fetch(`${s.url}${path}`, {
    method,
    headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  })
}

t.test('tokens: issue once, list without secrets, revoke by prefix, prune, audit', async (t) => {
  const s = await startTestService(t)
  const issued = await admin(s, 'POST', '/admin/tokens', { provider_id: 'gpu-1', name: 'rack 4' })
  t.equal(issued.status, 201)
  const tk = (await issued.json()) as { token: string; token_prefix: string }
  t.match(tk, { provider_id: 'gpu-1', name: 'rack 4', origin: 'operator_issued', token: /^[0-9a-f]{64}$/, token_prefix: tk.token.slice(0, 12) })
  const again = await admin(s, 'POST', '/admin/tokens', { provider_id: 'gpu-1' })
  t.equal(again.status, 409)
  t.match(await again.json(), { error: { code: 'COORD_TOKEN_ACTIVE_EXISTS' } })

  const list = await (await admin(s, 'GET', '/admin/tokens')).text()
  t.notOk(list.includes(tk.token), 'the list never holds a token')
  t.match(JSON.parse(list), { tokens: [{ provider_id: 'gpu-1', token_prefix: tk.token_prefix, revoked: false }] })

  const audit = (await (await admin(s, 'GET', '/admin/audit/pre-flip?max_last_used_age_s=3600')).json()) as { safe: boolean; offenders: unknown[] }
  t.match(audit, { safe: false, poolz_checked: true, active_tokens: 1, live_sessions: 0, offenders: [{ reason: 'unproven_token', provider_id: 'gpu-1' }] })

  const prune = await admin(s, 'POST', '/admin/tokens/prune', { older_than_s: 3600 })
  t.equal(prune.status, 400, 'under 24 h is refused')
  t.match(await prune.json(), { error: { code: 'COORD_BAD_REQUEST' } })
  t.match(await (await admin(s, 'POST', '/admin/tokens/prune', { older_than_s: 86_400 })).json(), { applied: false, tokens: [] })

  const revoked = await admin(s, 'POST', `/admin/tokens/${tk.token_prefix}/revoke`, {})
  t.equal(revoked.status, 200)
  t.match(await revoked.json(), { provider_id: 'gpu-1', revoked: true, kicked: false }, 'no session held that token: nothing closed')
  t.equal((await admin(s, 'POST', `/admin/tokens/${tk.token_prefix}/revoke`)).status, 404, 'already revoked')
  t.match(await (await admin(s, 'GET', '/admin/tokens?active=true')).json(), { tokens: [] })
})

t.test('every admin route refuses a missing, empty or wrong key before doing anything', async (t) => {
  const s = await startTestService(t)
  const p = await TestProvider.join(s.wsUrl, 'victim')
  const tk = (await (await admin(s, 'POST', '/admin/tokens', { provider_id: 'held' })).json()) as { token_prefix: string }
  const routes: Array<['GET' | 'POST', string, unknown]> = [
    ['GET', '/admin/tokens', undefined],
    ['POST', '/admin/tokens', { provider_id: 'intruder' }],
    ['POST', `/admin/tokens/${tk.token_prefix}/revoke`, { kick: true }],
    ['POST', '/admin/tokens/prune', { older_than_s: 86_400, apply: true }],
    ['GET', '/admin/audit/pre-flip', undefined],
    ['GET', '/admin/cordons', undefined],
    ['POST', '/admin/providers/victim/cordon', {}],
    ['POST', '/admin/providers/victim/uncordon', undefined],
    ['POST', '/admin/providers/victim/drain', undefined],
    ['POST', '/admin/providers/victim/kick', undefined],
    ['GET', '/admin/stats', undefined],
  ]
  for (const headers of [
    {} as Record<string, string>,
    { authorization: 'Bearer ' },
    { authorization: 'Bearer wrong-wrong-wrong-wrong' },
    { authorization: OPERATOR_KEY },
  ]) {
    for (const [method, path, body] of routes) {
      const res = await admin(s, method, path, body, headers)
      t.equal(res.status, 401, `${method} ${path} with ${JSON.stringify(headers).slice(0, 40)}`)
    }
  }
  const active = (await (await admin(s, 'GET', '/admin/tokens?active=true')).json()) as { tokens: Array<{ provider_id: string }> }
  t.same(active.tokens.map((r) => r.provider_id).sort(), ['held', 'victim'], 'nothing revoked, nothing issued')
  t.match((await s.poolz()).pool, [{ provider_id: 'victim', routing_eligible: true, cordoned: false }], 'nothing cordoned, drained or kicked')
  t.equal(p.client.ws.readyState, p.client.ws.OPEN)
})

t.test('admin bodies are bounded and typed', async (t) => {
  const s = await startTestService(t)
  const cases: Array<[string, string | Record<string, unknown>, number, string]> = [
    ['not JSON', '{"provider_id":', 400, 'invalid_json'],
    ['an array', '[1]', 400, 'invalid_json'],
    ['provider_id a number', { provider_id: 7 }, 400, 'COORD_BAD_REQUEST'],
    ['provider_id malformed', { provider_id: 'a b' }, 400, 'COORD_PROVIDER_ID_INVALID'],
    ['a control character in the name', { provider_id: 'x', name: 'a\nb' }, 400, 'COORD_BAD_REQUEST'],
    ['over 16 KiB', { provider_id: 'x', name: 'n'.repeat(17_000) }, 413, 'request_too_large'],
  ]
  for (const [name, body, status, code] of cases) {
    const res = await admin(s, 'POST', '/admin/tokens', body)
    t.equal(res.status, status, name)
    t.match(await res.json(), { error: { code } }, name)
  }
  const kick = await admin(s, 'POST', '/admin/tokens/abcdef/revoke', { kick: 'yes' })
  t.equal(kick.status, 400)
  t.equal((await admin(s, 'POST', '/admin/tokens/NOTHEX/revoke', {})).status, 404, 'a malformed prefix is no route')
  t.match(await (await admin(s, 'GET', '/admin/tokens')).json(), { tokens: [] }, 'nothing was issued')
})

t.test('revoke with kick: one authorised request revokes and closes the live session (4007)', async (t) => {
  const s = await startTestService(t)
  const tk = (await (await admin(s, 'POST', '/admin/tokens', { provider_id: 'leaky' })).json()) as { token: string; token_prefix: string }
  const p = await TestProvider.join(s.wsUrl, 'leaky', { token: tk.token })
  t.equal(p.ack.auth_state, 'bearer_validated')
  const res = await admin(s, 'POST', `/admin/tokens/${tk.token_prefix}/revoke`, { kick: true })
  t.match(await res.json(), { provider_id: 'leaky', revoked: true, kicked: true })
  t.same(await p.client.closed, { code: 4007, reason: 'kicked' })
  const back = await TestProvider.join(s.wsUrl, 'leaky', { token: tk.token }).catch((err: Error) => err.message)
  t.match(back, /was not admitted: 4005 invalid_token/, 'the revoked token is refused at its reconnect')
})

t.test('cordon: connected but never routable, through reconnects and restarts, until uncordon', async (t) => {
  const s = await startTestService(t)
  const p = await TestProvider.join(s.wsUrl, 'flaky', { handler: answer() })
  const other = await TestProvider.join(s.wsUrl, 'steady', { handler: answer() })
  const res = await admin(s, 'POST', '/admin/providers/flaky/cordon', { reason: 'wrong answers' })
  t.same(await res.json(), { provider_id: 'flaky', cordoned: true, live: true })
  t.match(
    (await s.poolz()).pool.find((r) => r.provider_id === 'flaky'),
    { routing_eligible: false, routing_ineligible_reason: 'cordoned', cordoned: true },
  )
  for (let i = 0; i < 4; i++) {
    const { response } = await buyer(s.url).chat.completions.create({ model: 'test-model', messages }).withResponse()
    t.equal(response.headers.get('x-pool-provider'), 'steady')
  }
  t.equal(p.requests.length, 0, 'a cordoned provider gets no request')
  t.equal(p.client.ws.readyState, p.client.ws.OPEN, 'and stays connected')
  const pinned = await apiError(buyer(s.url).chat.completions.create({ model: 'test-model', messages }, { headers: { 'x-pool-provider': 'flaky' } }))
  t.equal(pinned.status, 503, 'not even when pinned')

  // A reconnect does not shed the cordon.
  await p.client.close()
  await waitFor(() => s.svc.ctx.registry.get('flaky') === undefined, 'flaky gone')
  const again = await TestProvider.join(s.wsUrl, 'flaky', { token: p.ack.assigned_provider_token, handler: answer() })
  t.match(
    (await s.poolz()).pool.find((r) => r.provider_id === 'flaky'),
    { routing_ineligible_reason: 'cordoned' },
    'cordoned after a reconnect',
  )
  const models = (await (await fetch(`${s.url}/v1/models`)).json()) as { data: Array<{ id: string }> }
  t.same(
    models.data.map((m) => m.id),
    ['test-model'],
  )

  // Nor does a restart of the coordinator on the same database.
  await again.client.close()
  await other.client.close()
  const db = s.svc.ctx.db
  const restarted = await Service.create(envToConfig({ host: '127.0.0.1', port: '0', operatorKey: OPERATOR_KEY, dataDir: '/nonexistent' }), {
    db,
    log: s.logs.logger,
  })
  t.ok(restarted.ctx.cordons.has('flaky'), 'loaded from the database at start')
  t.notOk(restarted.ctx.cordons.has('steady'))
  t.match(await (await admin(s, 'GET', '/admin/cordons')).json(), { cordons: [{ provider_id: 'flaky', reason: 'wrong answers' }] })

  const lifted = await admin(s, 'POST', '/admin/providers/flaky/uncordon')
  t.same(await lifted.json(), { provider_id: 'flaky', cordoned: false, live: false })
  const back = await TestProvider.join(s.wsUrl, 'flaky', { token: p.ack.assigned_provider_token, handler: answer() })
  t.match(
    (await s.poolz()).pool.find((r) => r.provider_id === 'flaky'),
    { routing_eligible: true, cordoned: false },
  )
  const { response } = await buyer(s.url).chat.completions.create({ model: 'test-model', messages }).withResponse()
  t.equal(response.headers.get('x-pool-provider'), 'flaky')
  t.equal(back.requests.length, 1)
})

t.test('a cordon for an id that is not connected applies when it connects', async (t) => {
  const s = await startTestService(t)
  t.same(await (await admin(s, 'POST', '/admin/providers/later/cordon', {})).json(), { provider_id: 'later', cordoned: true, live: false })
  await TestProvider.join(s.wsUrl, 'later')
  t.match((await s.poolz()).pool, [{ provider_id: 'later', cordoned: true, routing_ineligible_reason: 'cordoned' }])
})

t.test('stats: requests and errors per 10 s bucket, for the dashboard', async (t) => {
  const s = await startTestService(t)
  await TestProvider.join(s.wsUrl, 'ok', { handler: answer() })
  await buyer(s.url).chat.completions.create({ model: 'test-model', messages })
  await buyer(s.url).chat.completions.create({ model: 'test-model', messages })
  await apiError(buyer(s.url).chat.completions.create({ model: 'no-such-model', messages }))
  const stats = (await (await admin(s, 'GET', '/admin/stats')).json()) as { bucket_s: number; buckets: Array<{ requests: number; errors: number }> }
  t.equal(stats.bucket_s, 10)
  t.equal(stats.buckets.length, 90, '15 minutes of buckets')
  t.same(
    stats.buckets.reduce((a, b) => [a[0]! + b.requests, a[1]! + b.errors], [0, 0]),
    [3, 1],
  )
})
