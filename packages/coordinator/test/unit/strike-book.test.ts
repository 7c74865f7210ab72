import t from 'tap'
import { StrikeBook, defaultStrikeLimits } from '../../src/pool/strike-book.js'

const HOUR = 3_600_000
const T0 = 1_000_000

interface Case {
  name: string
  /** [provider_id, ms after T0] per charge, in order. */
  charges: Array<[string, number]>
  /** Read `id` at T0 + `at`. */
  at: number
  id: string
  expected: { strikes: number; lastReason: 'invalid_frame' } | null
}

const cases: Case[] = [
  { name: 'an id never struck has no record', charges: [], at: 0, id: 'a', expected: null },
  { name: 'one strike counts at once', charges: [['a', 0]], at: 0, expected: { strikes: 1, lastReason: 'invalid_frame' }, id: 'a' },
  {
    name: 'strikes add up within the window',
    charges: [
      ['a', 0],
      ['a', 10],
      ['a', 20],
    ],
    at: 30,
    id: 'a',
    expected: { strikes: 3, lastReason: 'invalid_frame' },
  },
  {
    name: 'a strike still counts just before its hour ends',
    charges: [['a', 0]],
    at: HOUR - 1,
    id: 'a',
    expected: { strikes: 1, lastReason: 'invalid_frame' },
  },
  { name: 'a strike expires an hour after it was charged', charges: [['a', 0]], at: HOUR, id: 'a', expected: null },
  {
    name: 'each strike expires on its own: the later ones still count',
    charges: [
      ['a', 0],
      ['a', HOUR / 2],
    ],
    at: HOUR,
    id: 'a',
    expected: { strikes: 1, lastReason: 'invalid_frame' },
  },
  {
    name: 'ids are kept apart',
    charges: [
      ['a', 0],
      ['a', 0],
      ['b', 0],
    ],
    at: 0,
    id: 'b',
    expected: { strikes: 1, lastReason: 'invalid_frame' },
  },
]

for (const c of cases) {
  t.test(c.name, async (t) => {
    const book = new StrikeBook()
    for (const [id, at] of c.charges) book.charge(id, 'invalid_frame', T0 + at)
    t.same(book.get(c.id, T0 + c.at), c.expected)
  })
}

t.test('charge returns the strikes in the window, this one included', async (t) => {
  const book = new StrikeBook()
  t.equal(book.charge('a', 'invalid_frame', T0), 1)
  t.equal(book.charge('a', 'invalid_frame', T0 + 1), 2)
  t.equal(book.charge('a', 'invalid_frame', T0 + HOUR + 1), 1, 'the first two expired before the third')
})

t.test('an expired record is forgotten, so the book does not grow with old ids', async (t) => {
  const book = new StrikeBook()
  book.charge('a', 'invalid_frame', T0)
  t.equal(book.size, 1)
  t.equal(book.get('a', T0 + HOUR), null)
  t.equal(book.size, 0)
})

t.test('bounded: past maxEntries the id struck longest ago is forgotten', async (t) => {
  const book = new StrikeBook({ ...defaultStrikeLimits, maxEntries: 3 })
  book.charge('a', 'invalid_frame', T0)
  book.charge('b', 'invalid_frame', T0 + 1)
  book.charge('c', 'invalid_frame', T0 + 2)
  book.charge('a', 'invalid_frame', T0 + 3) // a is now the newest
  book.charge('d', 'invalid_frame', T0 + 4)
  t.equal(book.size, 3)
  t.equal(book.get('b', T0 + 5), null, 'b, struck longest ago, went')
  t.same(book.get('a', T0 + 5), { strikes: 2, lastReason: 'invalid_frame' }, 'a, struck again, stayed')
  t.ok(book.get('c', T0 + 5) && book.get('d', T0 + 5))
})

t.test('bounded per id: a flood of strikes counts as maxPerId', async (t) => {
  const book = new StrikeBook({ ...defaultStrikeLimits, maxPerId: 4 })
  for (let i = 0; i < 100; i++) book.charge('a', 'invalid_frame', T0 + i)
  t.same(book.get('a', T0 + 100), { strikes: 4, lastReason: 'invalid_frame' })
  t.equal(book.get('a', T0 + 99 + HOUR), null, 'and they expire with the newest of them')
})

t.test('the default bounds: 10,000 ids, strikes last an hour', async (t) => {
  t.same(defaultStrikeLimits, { windowMs: HOUR, maxEntries: 10_000, maxPerId: 64 })
  const book = new StrikeBook()
  for (let i = 0; i < 10_050; i++) book.charge(`p${i}`, 'invalid_frame', T0)
  t.equal(book.size, 10_000)
  t.equal(book.get('p0', T0), null)
  t.ok(book.get('p10049', T0))
})
