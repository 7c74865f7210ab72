import t from 'tap'
import { makeSession } from '../helpers/fixtures.js'
import type { AuthState } from '@poolcoord/protocol'
import type { ProviderSession } from '../../src/pool/provider-session.js'
import { Registry } from '../../src/pool/registry.js'
import type { Heartbeat } from '../../src/pool/provider-report.js'

const session = makeSession

/** Opaque handle standing in for a socket. */
interface Sock {
  name: string
}

const hb: Heartbeat = { status: 'busy', slotsFree: 1, slotsTotal: 8, models: ['qwen', 'llama'] }

t.test('register into an empty registry', async (t) => {
  const reg = new Registry<Sock>()
  t.equal(reg.size, 0)
  const s = session()
  const h = { name: 'h1' }
  t.strictSame(reg.register(s, h), { registered: true, displaced: null })
  t.equal(reg.size, 1)
  t.equal(reg.get('mac-1'), s)
  t.equal(reg.getByAssigned('a-1'), s)
  t.equal(reg.handle('mac-1', 'a-1'), h)
  t.equal(reg.get('mac-2'), undefined)
  t.equal(reg.getByAssigned('a-2'), undefined)
})

t.test('a replacement returns the displaced entry with its handle', async (t) => {
  const reg = new Registry<Sock>()
  const old = session({ assignedId: 'a-old', authState: 'self_minted' })
  const oldHandle = { name: 'old' }
  reg.register(old, oldHandle)
  const next = session({ assignedId: 'a-new', authState: 'bearer_validated' })
  const nextHandle = { name: 'new' }
  const r = reg.register(next, nextHandle)
  t.equal(r.registered, true)
  if (!r.registered) return
  t.ok(r.displaced, 'something was displaced')
  t.equal(r.displaced?.session, old, 'displaced session is the old one (same object)')
  t.equal(r.displaced?.handle, oldHandle, 'displaced handle is the old socket')
  t.equal(reg.size, 1)
  t.equal(reg.get('mac-1'), next)
  t.equal(reg.getByAssigned('a-new'), next)
  t.equal(reg.getByAssigned('a-old'), undefined, 'replaced id is no longer indexed')
  t.equal(reg.handle('mac-1', 'a-old'), undefined)
  t.equal(reg.handle('mac-1', 'a-new'), nextHandle)
})

interface RefusalCase {
  name: string
  existing: Partial<ProviderSession>
  incoming: AuthState
  reason: 'duplicate_never_displaces' | 'bearer_downgrade'
}

const refusals: RefusalCase[] = [
  { name: 'duplicate vs routable bearer', existing: { authState: 'bearer_validated' }, incoming: 'bearerless_duplicate', reason: 'duplicate_never_displaces' },
  { name: 'duplicate vs self_minted', existing: { authState: 'self_minted' }, incoming: 'bearerless_duplicate', reason: 'duplicate_never_displaces' },
  { name: 'duplicate vs duplicate', existing: { authState: 'bearerless_duplicate' }, incoming: 'bearerless_duplicate', reason: 'duplicate_never_displaces' },
  { name: 'self_minted vs routable bearer', existing: { authState: 'bearer_validated' }, incoming: 'self_minted', reason: 'bearer_downgrade' },
]

t.test('refusals leave the existing session untouched and indexed', async (t) => {
  for (const c of refusals) {
    const reg = new Registry<Sock>()
    const existing = session({ ...c.existing, assignedId: 'a-existing' })
    const before = structuredClone(existing)
    const h = { name: 'existing' }
    reg.register(existing, h)
    const incoming = session({ authState: c.incoming, assignedId: 'a-incoming', hostname: 'attacker' })
    t.strictSame(reg.register(incoming, { name: 'incoming' }), { registered: false, reason: c.reason }, `${c.name}: refused`)
    t.equal(reg.size, 1, `${c.name}: size`)
    t.equal(reg.get('mac-1'), existing, `${c.name}: existing still current`)
    t.strictSame(existing, before, `${c.name}: existing not mutated`)
    t.equal(reg.getByAssigned('a-existing'), existing, `${c.name}: existing still indexed by assigned_id`)
    t.equal(reg.getByAssigned('a-incoming'), undefined, `${c.name}: refused session not indexed`)
    t.equal(reg.handle('mac-1', 'a-existing'), h, `${c.name}: existing handle`)
    // The refused connection's later close and frames must not touch the existing session.
    t.equal(reg.remove('mac-1', 'a-incoming'), false, `${c.name}: refused close is a no-op`)
    t.equal(reg.touch('mac-1', 'a-incoming', 999), false, `${c.name}: refused touch is a no-op`)
    t.equal(reg.applyHeartbeat('mac-1', 'a-incoming', hb, 999), false, `${c.name}: refused heartbeat is a no-op`)
    t.strictSame(existing, before, `${c.name}: existing still not mutated`)
    t.equal(reg.size, 1)
  }
})

t.test('stale close: a replaced session cannot touch its replacement', async (t) => {
  const reg = new Registry<Sock>()
  reg.register(session({ assignedId: 'a-old' }), { name: 'old' })
  const next = session({ assignedId: 'a-new', lastInboundAt: 500 })
  reg.register(next, { name: 'new' })
  const before = structuredClone(next)

  const staleOps: { name: string; run: () => boolean }[] = [
    { name: 'remove', run: () => reg.remove('mac-1', 'a-old') },
    { name: 'touch', run: () => reg.touch('mac-1', 'a-old', 10_000) },
    { name: 'applyHeartbeat', run: () => reg.applyHeartbeat('mac-1', 'a-old', hb, 10_000) },
    { name: 'handle', run: () => reg.handle('mac-1', 'a-old') !== undefined },
  ]
  for (const op of staleOps) {
    t.equal(op.run(), false, `stale ${op.name} reports false`)
    t.equal(reg.get('mac-1'), next, `after stale ${op.name}: replacement still current`)
    t.equal(reg.getByAssigned('a-new'), next, `after stale ${op.name}: replacement still indexed`)
    t.strictSame(next, before, `after stale ${op.name}: replacement unchanged`)
  }
  t.equal(reg.size, 1)
  t.equal(reg.getByAssigned('a-old'), undefined)

  // The current id still works.
  t.equal(reg.remove('mac-1', 'a-new'), true)
  t.equal(reg.size, 0)
  t.equal(reg.get('mac-1'), undefined)
  t.equal(reg.getByAssigned('a-new'), undefined)
  t.equal(reg.remove('mac-1', 'a-new'), false, 'second remove is a no-op')
})

t.test('mutations require both ids to match', async (t) => {
  const reg = new Registry<Sock>()
  const s1 = session({ providerId: 'p1', assignedId: 'x1' })
  const s2 = session({ providerId: 'p2', assignedId: 'x2' })
  reg.register(s1, { name: '1' })
  reg.register(s2, { name: '2' })
  t.equal(reg.size, 2)
  t.equal(reg.remove('p1', 'x2'), false, 'assigned id of another provider')
  t.equal(reg.touch('p2', 'x1', 7), false)
  t.equal(reg.applyHeartbeat('p1', 'x2', hb, 7), false)
  t.equal(reg.remove('nobody', 'x1'), false, 'unknown provider')
  t.equal(reg.size, 2)
  t.equal(s1.lastInboundAt, 100)
  t.equal(s2.lastInboundAt, 100)
  t.equal(s1.status, 'ready')
  t.same(
    reg
      .sessions()
      .map((s) => s.providerId)
      .sort(),
    ['p1', 'p2'],
  )
  t.equal(reg.remove('p1', 'x1'), true)
  t.equal(reg.size, 1)
  t.equal(reg.get('p2'), s2, 'other provider untouched')
})

t.test('touch updates only lastInboundAt', async (t) => {
  const reg = new Registry<Sock>()
  const s = session()
  reg.register(s, { name: 'h' })
  t.equal(reg.touch('mac-1', 'a-1', 4242), true)
  t.equal(s.lastInboundAt, 4242)
  t.equal(s.lastHeartbeatAt, null)
  t.equal(s.status, 'ready')
})

t.test('applyHeartbeat', async (t) => {
  const cases: { name: string; hb: Heartbeat; models: string[]; modelId: string }[] = [
    { name: 'with models', hb, models: ['qwen', 'llama'], modelId: 'qwen' },
    { name: 'without models keeps them', hb: { status: 'draining', slotsFree: 0, slotsTotal: 2 }, models: ['llama'], modelId: 'llama' },
  ]
  for (const c of cases) {
    const reg = new Registry<Sock>()
    const s = session()
    reg.register(s, { name: 'h' })
    t.equal(reg.applyHeartbeat('mac-1', 'a-1', c.hb, 7777), true, `${c.name}: applied`)
    t.equal(s.status, c.hb.status, `${c.name}: status`)
    t.equal(s.slotsFree, c.hb.slotsFree, `${c.name}: slotsFree`)
    t.equal(s.slotsTotal, c.hb.slotsTotal, `${c.name}: slotsTotal`)
    t.strictSame(s.models, c.models, `${c.name}: models`)
    t.equal(s.modelId, c.modelId, `${c.name}: modelId`)
    t.equal(s.lastHeartbeatAt, 7777, `${c.name}: lastHeartbeatAt`)
    t.equal(s.lastInboundAt, 7777, `${c.name}: lastInboundAt`)
    t.equal(reg.get('mac-1'), s)
  }
})

t.test('size across register, replace, refuse and remove', async (t) => {
  const reg = new Registry<Sock>()
  const steps: { name: string; run: () => unknown; size: number }[] = [
    { name: 'register p1', run: () => reg.register(session({ providerId: 'p1', assignedId: 'a' }), { name: 'a' }), size: 1 },
    { name: 'register p2', run: () => reg.register(session({ providerId: 'p2', assignedId: 'b' }), { name: 'b' }), size: 2 },
    { name: 'replace p1', run: () => reg.register(session({ providerId: 'p1', assignedId: 'c' }), { name: 'c' }), size: 2 },
    {
      name: 'refuse dup on p2',
      run: () => reg.register(session({ providerId: 'p2', assignedId: 'd', authState: 'bearerless_duplicate' }), { name: 'd' }),
      size: 2,
    },
    { name: 'stale remove p1/a', run: () => reg.remove('p1', 'a'), size: 2 },
    { name: 'remove p1/c', run: () => reg.remove('p1', 'c'), size: 1 },
    { name: 'remove p2/b', run: () => reg.remove('p2', 'b'), size: 0 },
  ]
  for (const step of steps) {
    step.run()
    t.equal(reg.size, step.size, step.name)
    t.equal(reg.sessions().length, step.size, `${step.name}: sessions()`)
    t.equal([...reg.entries()].length, step.size, `${step.name}: entries()`)
  }
})

t.test('dispatch slots: acquire only on the current session; release goes back where it was taken', async (t) => {
  const reg = new Registry<Sock>()
  const old = session({ providerId: 'p', assignedId: 'old', authState: 'bearer_validated' })
  reg.register(old, { name: 'old' })
  t.ok(reg.acquire('p', 'old'))
  t.ok(reg.acquire('p', 'old'))
  t.equal(old.inFlight, 2)
  t.notOk(reg.acquire('p', 'nope'), 'a wrong assigned_id takes nothing')
  const next = session({ providerId: 'p', assignedId: 'new', authState: 'bearer_validated' })
  reg.register(next, { name: 'new' })
  t.notOk(reg.acquire('p', 'old'), 'a replaced session takes no new work')
  reg.release(old)
  t.equal(old.inFlight, 1)
  t.equal(next.inFlight, 0, "the successor's count is never touched by the old session's releases")
  reg.release(old)
  reg.release(old)
  t.equal(old.inFlight, 0, 'never negative')
})

t.test('markBusy: only the current session, only from ready', async (t) => {
  const reg = new Registry<Sock>()
  const s = session({ providerId: 'p', assignedId: 'x' })
  reg.register(s, { name: 'x' })
  reg.markBusy('p', 'other')
  t.equal(s.status, 'ready')
  reg.markBusy('p', 'x')
  t.equal(s.status, 'busy')
  s.status = 'draining'
  reg.markBusy('p', 'x')
  t.equal(s.status, 'draining', 'a draining provider stays draining')
  reg.applyHeartbeat('p', 'x', { status: 'ready', slotsFree: 4, slotsTotal: 4 }, 5)
  t.equal(s.status, 'ready', 'the next heartbeat decides again')
  t.same([...reg.liveSessions()], [s])
})

t.test('sessionList: every live session once, in an order connection order does not decide', async (t) => {
  let seed = 3
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31
  const reg = new Registry<null>(random)
  const check = (what: string) => {
    const list = reg.sessionList()
    t.equal(new Set(list).size, list.length, `${what}: no duplicates`)
    t.same(new Set(list), new Set(reg.liveSessions()), `${what}: the live sessions exactly`)
  }
  for (let i = 0; i < 100; i++) reg.register(makeSession({ providerId: `p${i}`, assignedId: `a${i}` }), null)
  check('after 100 registrations')
  t.not(
    reg
      .sessionList()
      .map((x) => x.providerId)
      .join(),
    Array.from({ length: 100 }, (_, i) => `p${i}`).join(),
    'not in connection order',
  )
  const replacement = makeSession({ providerId: 'p50', assignedId: 'a50-new', authState: 'bearer_validated' })
  const at = reg.sessionList().findIndex((x) => x.providerId === 'p50')
  reg.register(replacement, null)
  t.equal(reg.sessionList()[at], replacement, "a replacement takes its predecessor's place")
  check('after a replacement')
  for (let i = 0; i < 100; i += 3) reg.remove(`p${i}`, i === 50 ? 'a50-new' : `a${i}`)
  t.notOk(reg.remove('p1', 'stale-assigned-id'), 'a stale remove changes nothing')
  check('after removals')
  t.equal(reg.sessionList().length, 66)
})
