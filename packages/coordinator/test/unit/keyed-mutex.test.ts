import t from 'tap'
import { KeyedMutex } from '../../src/admission/keyed-mutex.js'

function gate() {
  let open!: () => void
  const p = new Promise<void>((r) => (open = r))
  return { p, open }
}

t.test('sections for one key run one at a time, in arrival order; other keys do not wait', async (t) => {
  const m = new KeyedMutex()
  const order: string[] = []
  const g = gate()
  const a = m.run('x', async () => {
    order.push('a:start')
    await g.p
    order.push('a:end')
  })
  const b = m.run('x', async () => {
    order.push('b')
  })
  const other = m.run('y', async () => {
    order.push('y')
  })
  await other
  t.same(order, ['a:start', 'y'], 'y ran while x was held; b waited')
  g.open()
  await Promise.all([a, b])
  t.same(order, ['a:start', 'y', 'a:end', 'b'])
  t.equal(m.size, 0, 'idle keys are dropped')
})

t.test('the queue per key is capped; a refused caller does not run', async (t) => {
  const m = new KeyedMutex(2)
  const g = gate()
  const ran: number[] = []
  const holder = m.run('x', () => g.p)
  const queued = [1, 2].map((i) => m.run('x', async () => void ran.push(i)))
  const refused = await m.run('x', async () => void ran.push(3))
  t.same(refused, { ok: false, busy: true })
  g.open()
  await holder
  t.same(await Promise.all(queued), [
    { ok: true, value: undefined },
    { ok: true, value: undefined },
  ])
  t.same(ran, [1, 2])
  t.same(await m.run('x', async () => 'free again'), { ok: true, value: 'free again' }, 'the cap counts waiters, not history')
})

t.test('a throwing section releases the key', async (t) => {
  const m = new KeyedMutex()
  await t.rejects(
    m.run('x', async () => {
      throw new Error('boom')
    }),
    /boom/,
  )
  t.same(await m.run('x', async () => 1), { ok: true, value: 1 })
})
