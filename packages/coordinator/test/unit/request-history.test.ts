import t from 'tap'
import { RequestHistory } from '../../src/request-history.js'

/** [requests, errors] per bucket, oldest first. */
const counts = (h: RequestHistory, now: number) => h.snapshot(now).buckets.map((b) => [b.requests, b.errors])

t.test('counts per bucket, oldest first, and forgets what falls out of the window', async (t) => {
  const h = new RequestHistory(10_000, 3)
  const base = 1_000_000_000_000 // a bucket boundary
  h.record(base + 1, false)
  h.record(base + 9_999, true)
  h.record(base + 10_000, false)
  // prettier-ignore
  t.same(counts(h, base + 10_500), [[0, 0], [2, 1], [1, 0]])
  t.equal(h.snapshot(base).buckets.at(-1)?.start, new Date(base).toISOString())
  // Three buckets later the first is out of the window, and its slot is reused, not added to.
  h.record(base + 30_000, true)
  // prettier-ignore
  t.same(counts(h, base + 30_000), [[1, 0], [0, 0], [1, 1]])
  // prettier-ignore
  t.same(counts(h, base + 100_000), [[0, 0], [0, 0], [0, 0]], 'an idle window is empty')
})
