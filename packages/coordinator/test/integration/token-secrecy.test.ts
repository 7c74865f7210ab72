import t from 'tap'
import { hashToken } from '@poolcoord/protocol'
import { TokenStore } from '../../src/tokens/token-store.js'
import { ProviderClient, join } from '../helpers/provider-client.js'
import { startTestService, waitFor } from '../helpers/service.js'

t.test('no cleartext token reaches a log line or /poolz on any admission path', async (t) => {
  const s = await startTestService(t)
  const store = new TokenStore(s.db)
  const seen: string[] = []
  const keep = (tok: string | undefined) => {
    if (tok) seen.push(tok)
    return tok as string
  }

  // mint, then prove on reconnect
  const minted = await join(s.wsUrl, 'alpha')
  const alpha = keep(minted.ack?.assigned_provider_token)
  await minted.client.close()
  await waitFor(async () => (await s.poolz()).summary.total === 0, 'removal')
  const proven = await join(s.wsUrl, 'alpha', { token: alpha })
  // replaced by a second bearer connection
  await join(s.wsUrl, 'alpha', { token: alpha })
  await proven.client.closed
  // TOFU reject, duplicate while live, binding mismatch
  await join(s.wsUrl, 'alpha')
  const live = await join(s.wsUrl, 'beta')
  keep(live.ack?.assigned_provider_token)
  await join(s.wsUrl, 'beta')
  const gamma = keep((await store.issue('gamma', 'g', 'operator_issued')).token)
  await join(s.wsUrl, 'delta', { token: gamma })
  // self-heal
  await live.client.close()
  await waitFor(async () => !(await s.poolz()).pool.some((r) => r.provider_id === 'beta'), 'beta removal')
  keep((await join(s.wsUrl, 'beta')).ack?.assigned_provider_token)
  // unknown, query-string and revoked tokens
  await join(s.wsUrl, 'alpha', { token: keep('e'.repeat(64)) })
  const q = await ProviderClient.connect(s.wsUrl, { query: `?token=${alpha}` })
  q.hello('alpha')
  await q.outcome()
  await store.revoke(gamma)
  await join(s.wsUrl, 'gamma', { token: gamma })
  // store outage: bearer and tokenless
  const poolz = JSON.stringify(await s.poolz())
  await s.db.close()
  await join(s.wsUrl, 'alpha', { token: alpha })
  await join(s.wsUrl, 'omega')

  t.ok(seen.length >= 5, `collected ${seen.length} tokens`)
  const logs = s.logs.text()
  t.ok(s.logs.lines.length > 15, `logs were captured (${s.logs.lines.length} lines)`)
  t.match(logs, alpha.slice(0, 12), 'positive control: the 12-char prefix is logged')
  for (const tok of seen) {
    t.notOk(logs.includes(tok), `token ${tok.slice(0, 12)}… absent from logs`)
    t.notOk(logs.includes(tok.slice(12)), `the secret part of ${tok.slice(0, 12)}… absent from logs`)
    t.notOk(logs.includes(hashToken(tok)), `hash of ${tok.slice(0, 12)}… absent from logs`)
    t.notOk(poolz.includes(tok.slice(12)), `token ${tok.slice(0, 12)}… absent from /poolz`)
    t.notOk(poolz.includes(hashToken(tok)), `hash of ${tok.slice(0, 12)}… absent from /poolz`)
  }
})
