import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import t from 'tap'
import { InFlightTable } from '../src/index.js'

t.test('a table of requests by id', async (t) => {
  const table = new InFlightTable<{ n: number }>()
  t.equal(table.size, 0)
  t.equal(table.get('a'), undefined)
  table.set('a', { n: 1 })
  table.set('b', { n: 2 })
  table.set('a', { n: 3 })
  t.equal(table.size, 2, 'replacing an entry does not count it twice')
  t.same(table.get('a'), { n: 3 })
  t.ok(table.has('b'))
  t.same(
    table.values().map((v) => v.n),
    [3, 2],
  )
  t.equal(table.delete('a'), true)
  t.equal(table.delete('a'), false, 'a second delete finds nothing')
  t.equal(table.size, 1)
  t.notOk(table.has('a'))
})

t.test('ids that are names on Object.prototype are ordinary keys', async (t) => {
  // request_id comes from the peer: a table on a plain {} would find '__proto__' or 'constructor' there.
  const table = new InFlightTable<{ id: string }>()
  for (const id of ['__proto__', 'constructor', 'hasOwnProperty', 'toString']) {
    t.equal(table.get(id), undefined, `${id} is absent at first`)
    t.notOk(table.has(id))
    t.equal(table.delete(id), false)
    table.set(id, { id })
    t.same(table.get(id), { id })
  }
  t.equal(table.size, 4)
  t.same(
    table
      .values()
      .map((v) => v.id)
      .sort(),
    ['__proto__', 'constructor', 'hasOwnProperty', 'toString'],
  )
})

/**
 * Why the table exists (see in-flight-table.ts): 16 entries in flight, 64 replaced between minor
 * collections, each value holding 8 KB, 400 rounds (about 200 MB that die young). The table lets
 * the minor collector free what it held; a Map, once one of its obsolete backing tables is in the
 * old generation, has each successor table and its values promoted. The Map is the control: it
 * shows the harness detects the chain (if a V8 release stops linking obsolete tables, it fails,
 * and the table can go back to being a Map).
 */
t.test('what a busy table held dies young', async (t) => {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as (opts?: { type: 'minor' | 'major' }) => void
  const oldSpace = () => getHeapSpaceStatistics().find((s) => s.space_name === 'old_space')!.space_used_size
  type Ops = { put: (k: string, v: object) => void; del: (k: string) => void }
  const churn = (ops: Ops): number => {
    let n = 0
    const live: string[] = []
    const value = () => ({ pad: new Array<number>(1000).fill(n) })
    for (let i = 0; i < 16; i++) {
      const k = `r${n++}`
      ops.put(k, value())
      live.push(k)
    }
    // The table now in use reaches the old generation; then a full collection settles the heap.
    gc({ type: 'minor' })
    gc({ type: 'minor' })
    gc()
    const before = oldSpace()
    for (let round = 0; round < 400; round++) {
      for (let j = 0; j < 64; j++) {
        ops.del(live.shift()!)
        const k = `r${n++}`
        ops.put(k, value())
        live.push(k)
      }
      gc({ type: 'minor' })
    }
    return (oldSpace() - before) / 2 ** 20
  }
  // The table first: the Map's promotions could teach V8 to allocate these values old from the start.
  const tablePromoted = Math.max(
    ...[0, 1, 2].map(() => {
      const table = new InFlightTable<object>()
      return churn({ put: (k, v) => table.set(k, v), del: (k) => table.delete(k) })
    }),
  )
  const map = new Map<string, object>()
  const mapPromoted = churn({ put: (k, v) => map.set(k, v), del: (k) => map.delete(k) })
  t.ok(tablePromoted < 4, `InFlightTable: ${tablePromoted.toFixed(1)} MiB promoted (under 4)`)
  t.ok(mapPromoted > 8, `the control, a Map: ${mapPromoted.toFixed(1)} MiB promoted (over 8)`)
})
