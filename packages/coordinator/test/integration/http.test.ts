import t from 'tap'
import { join } from '../helpers/provider-client.js'
import { OPERATOR_KEY, startTestService } from '../helpers/service.js'

t.test('/poolz requires the operator key', async (t) => {
  const s = await startTestService(t)
  const headers: Array<[string, Record<string, string>]> = [
    ['no header', {}],
    ['empty bearer', { authorization: 'Bearer ' }],
    ['wrong key', { authorization: `Bearer ${OPERATOR_KEY}x` }],
    ['prefix of the key', { authorization: `Bearer ${OPERATOR_KEY.slice(0, 10)}` }],
    ['wrong scheme', { authorization: `Basic ${OPERATOR_KEY}` }],
  ]
  for (const [name, h] of headers) {
    const res = await fetch(`${s.url}/poolz`, { headers: h })
    t.equal(res.status, 401, name)
    t.equal(((await res.json()) as { error: { code: string } }).error.code, 'COORD_UNAUTHORIZED')
  }
  const ok = await fetch(`${s.url}/poolz`, { headers: { authorization: `Bearer ${OPERATOR_KEY}` } })
  t.equal(ok.status, 200)
})

t.test('/poolz rows and summary; /healthz counts; /metrics moves', async (t) => {
  const s = await startTestService(t)
  const a = await join(s.wsUrl, 'a')
  await join(s.wsUrl, 'a') // a duplicate, refused
  const poolz = await s.poolz()
  t.equal(poolz.summary.total, 1)
  t.equal(poolz.summary.routable, 1)
  t.same(poolz.summary.by_auth_state, { key_proven: 0, bearer_validated: 0, self_minted: 1, bearerless_duplicate: 0 })
  const row = poolz.pool[0]
  t.equal(row?.token_prefix, a.ack?.assigned_provider_token?.slice(0, 12))
  t.hasStrict(row, { provider_id: 'a', assigned_id: a.ack?.assigned_id, auth_state: 'self_minted', routing_eligible: true, status: 'ready', slots_free: 2 })

  const health = (await (await fetch(`${s.url}/healthz`)).json()) as Record<string, unknown>
  t.hasStrict(health, { status: 'ok', pool: { total: 1, routable: 1 } })

  const metrics = await (await fetch(`${s.url}/metrics`)).text()
  t.match(metrics, /poolcoord_admissions_total\{outcome="minted"\} 1/)
  t.match(metrics, /poolcoord_admissions_total\{outcome="registration_refused"\} 1/)
  t.match(metrics, /poolcoord_pool_sessions\{auth_state="self_minted",routable="true"\} 1/)
})

t.test('unknown paths 404 and wrong methods 405, with the error envelope', async (t) => {
  const s = await startTestService(t)
  const nf = await fetch(`${s.url}/nope`)
  t.equal(nf.status, 404)
  t.equal(((await nf.json()) as { error: { code: string } }).error.code, 'COORD_NOT_FOUND')
  const m = await fetch(`${s.url}/poolz`, { method: 'POST' })
  t.equal(m.status, 405)
  const chat = await fetch(`${s.url}/v1/chat/completions`)
  t.equal(chat.status, 405)
  t.match(chat.headers.get('x-request-id'), /^req-[0-9a-f-]{36}$/, 'a wrong method on the chat path carries a request id too (buyer-api.md §2)')
  const ws404 = await fetch(`${s.url}/ws/other`, { headers: { connection: 'upgrade', upgrade: 'websocket' } }).catch(() => null)
  t.ok(ws404 === null || ws404.status === 404, 'an upgrade on another path is refused')
})
