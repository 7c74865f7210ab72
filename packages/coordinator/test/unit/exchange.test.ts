import t from 'tap'
import { responseEnd, type CancelReason, type EndStatus, type Usage } from '@poolcoord/protocol'
import { ManualClock } from '../../src/clock.js'
import type { CoordinatorError } from '../../src/errors.js'
import { ByteBudget } from '../../src/routing/byte-budget.js'
import { createLogger } from '../../src/logger.js'
import type { ProviderSession } from '../../src/pool/provider-session.js'
import { EjectionCap } from '../../src/pool/ejection-cap.js'
import { Registry } from '../../src/pool/registry.js'
import type { AttemptEvent, AttemptHandle, AttemptTarget, DispatchRequest } from '../../src/routing/attempt.js'
import { Exchange, type ExchangeContext, type ExchangeRequest, type ExchangeSink, type WithdrawStatus } from '../../src/routing/exchange.js'
import { makeSession } from '../helpers/fixtures.js'

/** The exchange's only way to a provider is AttemptTarget: this one lets each test play the provider. */
class FakeTarget implements AttemptTarget {
  readonly attempts: Array<{ providerId: string; emit: (e: AttemptEvent) => void; cancelled: CancelReason | null }> = []
  readonly unreachable = new Set<string>()

  dispatch(session: ProviderSession, _req: DispatchRequest, onEvent: (e: AttemptEvent) => void): AttemptHandle | null {
    if (this.unreachable.has(session.providerId)) return null
    const a = { providerId: session.providerId, emit: onEvent, cancelled: null as CancelReason | null }
    this.attempts.push(a)
    return { session, cancel: (reason) => void (a.cancelled ??= reason) }
  }

  last(): FakeTarget['attempts'][number] {
    return this.attempts[this.attempts.length - 1]!
  }

  end(status: EndStatus, usage?: Usage): void {
    this.last().emit({ kind: 'end', end: responseEnd('req-1', status, { usage }) })
  }
}

class RecordingSink implements ExchangeSink {
  readonly events: unknown[][] = []
  acceptChunks = true
  onCommit(providerId: string): void {
    this.events.push(['commit', providerId])
  }
  onChunk(data: string): boolean {
    this.events.push(['chunk', data])
    return this.acceptChunks
  }
  onComplete(body: string | null, usage: Usage | null): void {
    this.events.push(['complete', body, usage])
  }
  onFail(error: CoordinatorError, providerId: string | null): void {
    this.events.push(['fail', error.code, providerId])
  }
  onWithdraw(status: WithdrawStatus): void {
    this.events.push(['withdraw', status])
  }
}

interface Setup {
  limits?: Partial<ExchangeContext['config']['limits']>
  budget?: number
  /** provider_id → free slots: more slots are chosen first. */
  pool?: Record<string, number>
  request?: Partial<ExchangeRequest>
}

function setup(o: Setup = {}) {
  const registry = new Registry<null>()
  for (const [id, slots] of Object.entries(o.pool ?? { a: 4 })) {
    registry.register(makeSession({ providerId: id, assignedId: `as-${id}`, slotsFree: slots }), null)
  }
  const clock = new ManualClock()
  const buffers = new ByteBudget(o.budget ?? 1 << 20)
  const failovers: string[] = []
  const ctx: ExchangeContext = {
    config: { limits: { requestTimeoutMs: 10_000, firstChunkTimeoutMs: 10_000, maxResponseBytes: 1 << 20, ...o.limits } },
    pool: registry,
    ejection: new EjectionCap(50),
    clock,
    buffers,
    metrics: { failover: (reason) => void failovers.push(reason) },
    log: createLogger({ level: 'silent' }),
  }
  const target = new FakeTarget()
  const sink = new RecordingSink()
  const request: ExchangeRequest = {
    requestId: 'req-1',
    model: 'llama',
    stream: false,
    frame: '{}',
    pin: null,
    arrivedAt: clock.now(),
    ...o.request,
  }
  const exchange = new Exchange(ctx, target, request)
  return { registry, clock, buffers, failovers, target, sink, exchange, health: (id: string) => registry.get(id)!.consecutiveFailures }
}

const usage = { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 }

t.test('a held answer goes to the sink whole, at its end, and its reservation is released', async (t) => {
  const s = setup()
  const done = s.exchange.run(s.sink)
  s.clock.advance(7)
  s.target.last().emit({ kind: 'chunk', data: 'hel' })
  s.target.last().emit({ kind: 'chunk', data: 'lo' })
  t.ok(s.buffers.inUse > 0, 'the held chunks are reserved')
  s.target.end('complete', usage)
  t.same(await done, { status: 'complete', providerId: 'a', attempts: 1, failovers: [], firstChunkMs: 7, usage })
  t.same(s.sink.events, [
    ['commit', 'a'],
    ['complete', 'hello', usage],
  ])
  t.equal(s.buffers.inUse, 0)
})

t.test('a stream commits with its first non-empty chunk and passes chunks through', async (t) => {
  const s = setup({ request: { stream: true } })
  const done = s.exchange.run(s.sink)
  s.target.last().emit({ kind: 'chunk', data: '' })
  s.target.last().emit({ kind: 'chunk', data: 'data: 1\n\n' })
  s.target.end('complete')
  t.equal((await done).status, 'complete')
  t.same(s.sink.events, [
    ['commit', 'a'],
    ['chunk', 'data: 1\n\n'],
    ['complete', null, null],
  ])
})

t.test('queue_full fails over: the full provider is marked busy and cooled, the failover counted', async (t) => {
  const s = setup({ pool: { a: 4, b: 3 } })
  const done = s.exchange.run(s.sink)
  s.target.end('error_queue_full')
  t.equal(s.registry.get('a')!.status, 'busy')
  t.equal(s.health('a'), 1)
  t.equal(s.target.last().providerId, 'b')
  s.target.last().emit({ kind: 'chunk', data: 'x' })
  s.target.end('complete')
  const r = await done
  t.same([r.status, r.providerId, r.attempts, r.failovers], ['complete', 'b', 2, ['queue_full']])
  t.same(s.failovers, ['queue_full'])
})

t.test('a session that cannot take the frame is unreachable, and the request fails over', async (t) => {
  const s = setup({ pool: { a: 4, b: 3 } })
  s.target.unreachable.add('a')
  const done = s.exchange.run(s.sink)
  t.equal(s.target.last().providerId, 'b')
  s.target.last().emit({ kind: 'chunk', data: 'x' })
  s.target.end('complete')
  t.same((await done).failovers, ['unreachable'])
})

t.test('a failover that finds nobody answers with the first failure', async (t) => {
  const s = setup()
  const done = s.exchange.run(s.sink)
  s.target.end('error_model_not_loaded')
  t.equal((await done).status, 'provider_unavailable')
  t.same(s.sink.events, [['fail', 'provider_unavailable', 'a']], 'named after the last provider tried')
})

t.test('a pinned request neither fails over nor moves health', async (t) => {
  const s = setup({ pool: { a: 4, b: 3 }, request: { pin: 'a' } })
  const done = s.exchange.run(s.sink)
  s.target.last().emit({ kind: 'lost' })
  const r = await done
  t.same([r.status, r.attempts], ['provider_error', 1])
  t.equal(s.health('a'), 0)
})

t.test('"complete" with no chunk is a provider error', async (t) => {
  const s = setup()
  const done = s.exchange.run(s.sink)
  s.target.last().emit({ kind: 'chunk', data: '' })
  s.target.end('complete')
  t.equal((await done).status, 'provider_error')
  t.equal(s.health('a'), 1)
})

t.test('a stream chunk the buyer cannot take withdraws the attempt with buyer_too_slow', async (t) => {
  const s = setup({ request: { stream: true } })
  s.sink.acceptChunks = false
  const done = s.exchange.run(s.sink)
  s.target.last().emit({ kind: 'chunk', data: 'x' })
  t.equal((await done).status, 'buyer_too_slow')
  t.equal(s.target.last().cancelled, 'buyer_too_slow')
  t.same(s.sink.events, [
    ['commit', 'a'],
    ['chunk', 'x'],
    ['withdraw', 'buyer_too_slow'],
  ])
  t.equal(s.health('a'), 0, 'a slow buyer is not the provider fault')
})

t.test('a held answer past maxResponseBytes is cancelled and counts against the provider', async (t) => {
  const s = setup({ limits: { maxResponseBytes: 300 } })
  const done = s.exchange.run(s.sink)
  s.target.last().emit({ kind: 'chunk', data: 'x'.repeat(100) })
  t.equal((await done).status, 'provider_error')
  t.equal(s.target.last().cancelled, 'response_too_large')
  t.equal(s.health('a'), 1)
  t.equal(s.buffers.inUse, 0)
})

t.test('a held answer the buffer budget cannot hold is coordinator_busy, not the provider fault', async (t) => {
  const s = setup({ budget: 300 })
  const done = s.exchange.run(s.sink)
  s.target.last().emit({ kind: 'chunk', data: 'x'.repeat(100) })
  t.equal((await done).status, 'coordinator_busy')
  t.equal(s.target.last().cancelled, 'coordinator_busy')
  t.equal(s.health('a'), 0)
})

t.test('the buyer leaving cancels the attempt, and later events are ignored', async (t) => {
  const s = setup()
  const done = s.exchange.run(s.sink)
  s.exchange.cancel()
  s.target.last().emit({ kind: 'chunk', data: 'x' })
  s.target.end('complete')
  t.equal((await done).status, 'buyer_disconnected')
  t.equal(s.target.last().cancelled, 'buyer_disconnected')
  t.same(s.sink.events, [['withdraw', 'buyer_disconnected']])
})

t.test('a stream with no first chunk in time is cancelled with timeout, and no failover', async (t) => {
  const s = setup({ pool: { a: 4, b: 3 }, request: { stream: true }, limits: { firstChunkTimeoutMs: 5 } })
  const r = await s.exchange.run(s.sink)
  t.same([r.status, r.attempts], ['provider_timeout', 1])
  t.equal(s.target.last().cancelled, 'timeout')
  t.equal(s.health('a'), 1)
})

t.test('the request deadline cancels the attempt and counts against the provider', async (t) => {
  const s = setup({ limits: { requestTimeoutMs: 5 } })
  const r = await s.exchange.run(s.sink)
  t.equal(r.status, 'provider_timeout')
  t.equal(s.target.last().cancelled, 'timeout')
  t.equal(s.health('a'), 1)
})

t.test('a request whose deadline passed while it was queued is never dispatched', async (t) => {
  const s = setup()
  s.clock.advance(10_000)
  const r = await s.exchange.run(s.sink)
  t.same([r.status, r.attempts, s.target.attempts.length], ['provider_timeout', 0, 0])
  t.same(s.sink.events, [['fail', 'provider_timeout', null]])
})

t.test('nobody to select: model_not_found, or no_provider_available', async (t) => {
  const unknown = setup({ request: { model: 'other' } })
  t.equal((await unknown.exchange.run(unknown.sink)).status, 'model_not_found')
  const pinned = setup({ request: { pin: 'b' } })
  t.equal((await pinned.exchange.run(pinned.sink)).status, 'no_provider_available')
})
