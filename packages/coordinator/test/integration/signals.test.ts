import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { buyer } from '../helpers/buyer.js'
import { childUrls, spawnCoordinator } from '../helpers/child-coordinator.js'
import { join as joinPool } from '../helpers/provider-client.js'
import { TOKENS, TestProvider } from '../helpers/test-provider.js'

t.test('a SIGHUP during start-up is ignored, and the process comes up', async (t) => {
  const c = spawnCoordinator(t)
  await c.event('coordinator.starting')
  c.child.kill('SIGHUP')
  await c.event('config.reload_ignored')
  const { url } = await childUrls(c)
  t.equal((await fetch(`${url}/healthz`)).status, 200, 'still alive and serving')
})

t.test('SIGHUP reloads require_provider_tokens: the next upgrade changes, live sessions stay', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'poolcoord-live-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'live.yaml')
  writeFileSync(file, 'require_provider_tokens: false\n')
  const c2 = spawnCoordinator(t, { COORD_CONFIG: file })
  const { wsUrl } = await childUrls(c2)
  const before = await joinPool(wsUrl, 'early-bird')
  t.equal(before.ack?.auth_state, 'self_minted', 'tokenless admitted while the flag is off')

  writeFileSync(file, 'require_provider_tokens: true\n')
  c2.child.kill('SIGHUP')
  const reloaded = await c2.event('config.reloaded')
  t.same(reloaded.changed, [{ setting: 'require_provider_tokens', from: false, to: true }])
  const after = await joinPool(wsUrl, 'late-comer')
  t.same(after.close, { code: 4005, reason: 'invalid_token' }, 'the next tokenless upgrade is refused')
  t.equal(before.client.ws.readyState, before.client.ws.OPEN, 'the session admitted before is untouched')
  const token = before.ack?.assigned_provider_token as string
  await before.client.close()
  t.equal((await joinPool(wsUrl, 'early-bird', { token })).ack?.auth_state, 'bearer_validated', 'bearer providers are unaffected')

  // An invalid file keeps the old settings and says why.
  writeFileSync(file, 'require_provider_token: false\n') // a typo
  c2.child.kill('SIGHUP')
  const failed = await c2.event('config.reload_failed')
  t.match(failed.reason, /unknown setting "require_provider_token"/)
  t.same((await joinPool(wsUrl, 'still-refused')).close, { code: 4005, reason: 'invalid_token' }, 'still requiring tokens')
  t.equal(c2.child.exitCode, null, 'the process is still running')
})

t.test('SIGTERM drains: an in-flight stream completes, then the process exits 0', async (t) => {
  const c = spawnCoordinator(t, { COORD_DRAIN_TIMEOUT_S: '20' })
  const { url, wsUrl } = await childUrls(c)
  const p = await TestProvider.join(wsUrl, 'streamer')
  const sse = (word: string) =>
    `data: ${JSON.stringify({ id: 'x', object: 'chat.completion.chunk', created: 1, model: 'test-model', choices: [{ index: 0, delta: { content: word }, finish_reason: null }] })}\n\n`
  const pending = buyer(url).chat.completions.create({ model: 'test-model', stream: true, messages: [{ role: 'user', content: 'hi' }] })
  const req = await p.request()
  p.chunk(req.request_id, sse(TOKENS[0] as string))
  const stream = await pending
  const it = stream[Symbol.asyncIterator]()
  const got = [(await it.next()).value?.choices[0]?.delta.content]

  const drainFrame = new Promise<unknown>((resolve) => p.client.ws.on('message', (d) => JSON.parse(d.toString()).type === 'drain' && resolve(true)))
  c.child.kill('SIGTERM')
  await c.event('coordinator.draining')
  t.ok(await drainFrame, 'the provider was told to drain')
  const refused = await fetch(`${url}/v1/chat/completions`, { method: 'POST', body: '{}' })
  t.equal(refused.status, 503, 'no new buyer work while draining')
  t.equal(((await refused.json()) as { error: { code: string } }).error.code, 'coordinator_draining')
  t.equal(refused.headers.get('retry-after'), '5')
  t.equal((await fetch(`${url}/healthz`)).status, 503, 'health says draining, so a load balancer moves on')
  // The provider finishes the stream it had.
  for (const word of TOKENS.slice(1)) p.chunk(req.request_id, sse(word))
  p.chunk(req.request_id, 'data: [DONE]\n\n')
  p.end(req.request_id)
  for (let n = await it.next(); !n.done; n = await it.next()) got.push(n.value.choices[0]?.delta.content)
  t.same(got, TOKENS, 'the whole answer arrived')
  t.match(await c.event('coordinator.drained'), { outcome: 'idle', cut: 0 })
  t.same(await c.exited, { code: 0, signal: null })
  t.same(await p.client.closed, { code: 1001, reason: 'shutting_down' })
})
