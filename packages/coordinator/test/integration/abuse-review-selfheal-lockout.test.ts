import t from 'tap'
import { ManualClock } from '../../src/clock.js'
import { defaultMintRules } from '../../src/limits/abuse-settings.js'
import { join } from '../helpers/provider-client.js'
import { startTestService, waitFor } from '../helpers/service.js'

// Review of what the mint buckets charge (specs/admission.md §7.2): every tokenless hello, also
// the self-heal of an id that already exists (§3 row 4), which mints no new identity. Self-heal
// exists for old binaries that drop the token they are minted (and for the agent whose token
// write failed, provider-agent.md §3.1): such a provider reconnects tokenless every time. With the
// default 10 an hour, one of them on a flaky link (a reconnect a minute) is locked out (4008)
// within a quarter of an hour, and a coordinator restart with more than 120 of them in the pool locks the rest
// out for up to an hour (the global bucket). Neither is an attack; both refuse legitimate traffic.

t.test('an old binary that drops its token, reconnecting once a minute, is locked out (4008) within a quarter of an hour', async (t) => {
  const clock = new ManualClock(Date.now())
  const s = await startTestService(t, { clock, limits: { mint: defaultMintRules } })
  const outcomes: string[] = []
  for (let i = 0; i < 15; i++) {
    const r = await join(s.wsUrl, 'old-binary-1', { localAddress: '127.0.0.90' })
    outcomes.push(r.ack?.auth_state ?? `${r.close?.code}`)
    if (r.ack !== undefined) {
      await r.client.close()
      await waitFor(() => s.svc.ctx.registry.get('old-binary-1') === undefined, 'leaving')
    }
    clock.advance(60_000)
  }
  t.same(outcomes.slice(1), Array(14).fill('self_minted'), `every reconnect of the same id self-heals (got ${outcomes.join(', ')})`)
  t.equal(s.logs.events('admission.self_heal').length, 14, 'all but the first were self-heals: no new identity was minted')
})
