import t, { type Test } from 'tap'
import { ManualClock } from '../../src/clock.js'
import { apiError, buyer } from '../helpers/buyer.js'
import { startTestService, waitFor, type PoolzRow, type TestService } from '../helpers/service.js'
import { TestProvider, answer } from '../helpers/test-provider.js'

/*
 * The failure cooldown as operators see it on /poolz (reason, failures in a row, until when,
 * strikes), and the ejection cap that bounds it (COORD_MAX_EJECTION_PERCENT), with real provider
 * sockets, real HTTP and the official client as the buyer. Time is the ManualClock's.
 */

const messages = [{ role: 'user' as const, content: 'hi' }]
const HOUR = 3_600_000

async function rowOf(s: TestService, id: string): Promise<PoolzRow> {
  const row = (await s.poolz()).pool.find((r) => r.provider_id === id)
  if (row === undefined) throw new Error(`no /poolz row for ${id}`)
  return row
}

const iso = (ms: number): string => new Date(ms).toISOString()

t.test("a failing provider's /poolz row says why, how often, until when, and its strikes survive a reconnect", async (t) => {
  const clock = new ManualClock()
  const t0 = clock.now()
  const s = await startTestService(t, { clock })
  // flaky has the most slots: the first request goes to it.
  const flaky = await TestProvider.join(s.wsUrl, 'flaky', { hello: { max_concurrency: 8 } })
  const token = flaky.ack.assigned_provider_token as string
  flaky.serve((req, p) => p.end(req.request_id, 'error_internal'))
  const steady = await TestProvider.join(s.wsUrl, 'steady', { handler: answer() })

  t.match(await rowOf(s, 'flaky'), {
    consecutive_failures: 0,
    last_failure_reason: null,
    cooldown_until: null,
    cooling_down: false,
    cooldown_capped: false,
    strikes: 0,
    last_strike_reason: null,
  })
  t.equal((await apiError(buyer(s.url).chat.completions.create({ model: 'test-model', messages }))).status, 502)
  t.match(
    await rowOf(s, 'flaky'),
    {
      routing_eligible: true,
      consecutive_failures: 1,
      last_failure_reason: 'provider_internal',
      cooldown_until: iso(t0 + 1000),
      cooling_down: true,
      cooldown_capped: false,
    },
    'one failure: the reason, the count, and a 1 s cooldown, ranked last (1 of 2 providers is within the 50% cap)',
  )
  await buyer(s.url).chat.completions.create({ model: 'test-model', messages })
  t.equal(steady.requests.length, 1, 'the next request goes to the healthy provider')

  // Alone with the model, flaky is never sidelined: 0 of 1 may be.
  await steady.close()
  await waitFor(() => s.svc.ctx.registry.get('steady') === undefined, 'steady gone')
  t.match(await rowOf(s, 'flaky'), { cooling_down: false, cooldown_capped: true, cooldown_until: iso(t0 + 1000) }, 'the only provider of its model: capped')

  // It drops the socket mid-request, and (as the connection shell does for an abusive frame) is charged a strike.
  flaky.serve(() => flaky.crash())
  t.equal((await apiError(buyer(s.url).chat.completions.create({ model: 'test-model', messages }))).status, 502)
  await waitFor(() => s.svc.ctx.registry.get('flaky') === undefined, 'flaky gone')
  s.svc.ctx.strikes.charge('flaky', 'invalid_frame', clock.now())

  const again = await TestProvider.join(s.wsUrl, 'flaky', { token, hello: { max_concurrency: 8 } })
  t.equal(again.ack.auth_state, 'bearer_validated')
  t.match(
    await rowOf(s, 'flaky'),
    {
      consecutive_failures: 2,
      last_failure_reason: 'disconnect',
      cooldown_until: iso(t0 + 2000),
      strikes: 1,
      last_strike_reason: 'invalid_frame',
    },
    'the reconnected session carries the history and the strike of its provider_id',
  )

  clock.advance(2000)
  t.match(
    await rowOf(s, 'flaky'),
    { cooling_down: false, cooldown_capped: false, consecutive_failures: 2, cooldown_until: iso(t0 + 2000) },
    'the cooldown has passed',
  )
  again.serve(answer())
  await buyer(s.url).chat.completions.create({ model: 'test-model', messages })
  t.match(
    await rowOf(s, 'flaky'),
    { consecutive_failures: 0, last_failure_reason: null, cooldown_until: null, strikes: 1 },
    'a complete answer clears the cooldown, not the strike',
  )
  clock.advance(HOUR)
  t.match(await rowOf(s, 'flaky'), { strikes: 0, last_strike_reason: null }, 'the strike expires after an hour')
})

/**
 * Two providers of one model, both failing: strong fails first, weak after it; strong has more
 * free slots. Returns who the next request goes to, and the rows before it.
 */
async function bothFailing(t: Test, maxEjectionPercent: string): Promise<{ next: string; weak: PoolzRow; strong: PoolzRow; providerCount: number }> {
  const clock = new ManualClock()
  const s = await startTestService(t, { clock, env: { maxEjectionPercent } })
  const strong = await TestProvider.join(s.wsUrl, 'strong', { hello: { max_concurrency: 8 } })
  strong.serve((req, p) => p.end(req.request_id, 'error_internal'))
  await apiError(buyer(s.url).chat.completions.create({ model: 'test-model', messages }))
  const weak = await TestProvider.join(s.wsUrl, 'weak', { hello: { max_concurrency: 2 } })
  weak.serve((req, p) => p.end(req.request_id, 'error_internal'))
  clock.advance(1)
  await apiError(buyer(s.url).chat.completions.create({ model: 'test-model', messages }))
  t.same([strong.requests.length, weak.requests.length], [1, 1], 'each failed one request')

  const weakRow = await rowOf(s, 'weak')
  const strongRow = await rowOf(s, 'strong')
  const models = (await (await fetch(`${s.url}/v1/models`)).json()) as { data: Array<{ id: string; provider_count: number }> }
  weak.serve(answer())
  strong.serve(answer())
  await buyer(s.url).chat.completions.create({ model: 'test-model', messages })
  const next = weak.requests.length === 2 ? 'weak' : 'strong'
  return { next, weak: weakRow, strong: strongRow, providerCount: models.data.find((m) => m.id === 'test-model')?.provider_count ?? 0 }
}

t.test('the ejection cap: with both providers of a model failing, one stays routable', async (t) => {
  const capped = await bothFailing(t, '50')
  t.match(capped.strong, { consecutive_failures: 1, cooling_down: true, cooldown_capped: false }, 'strong, sidelined first, stays sidelined')
  t.match(capped.weak, { consecutive_failures: 1, cooling_down: false, cooldown_capped: true }, 'weak failed when the cap was reached: released')
  t.equal(capped.next, 'weak', 'the next request goes to the released provider, although strong has more free slots')
  t.equal(capped.providerCount, 2, '/v1/models counts both: the cooldown ranks, it never removes')

  // The same pool with the cap off (100%: the cooldown may sideline everyone): both rank last,
  // and free slots decide. This is what the cap changes.
  const uncapped = await bothFailing(t, '100')
  t.match(uncapped.weak, { cooling_down: true, cooldown_capped: false })
  t.match(uncapped.strong, { cooling_down: true, cooldown_capped: false })
  t.equal(uncapped.next, 'strong', 'without the cap both are cooling, and strong wins on slots')
})
