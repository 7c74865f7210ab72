import t from 'tap'
import { Counter, Histogram, Registry } from 'prom-client'
import { HotCounter, HotHistogram } from '../../src/hot-metrics.js'

// The hot metrics must be indistinguishable on /metrics from prom-client's own: same lines, same
// order within a metric, same values, for the same calls.
const BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]
const SAMPLES: Array<[number, string]> = [
  [0.003, 'false'],
  [0.01, 'false'],
  [0.07, 'true'],
  [3, 'true'],
  [42, 'false'],
  [0.5, 'false'],
  [Number.NaN, 'true'],
]

t.test('a HotCounter writes what a prom-client Counter writes', async (t) => {
  const ours = new Registry()
  const theirs = new Registry()
  const hot = new HotCounter(ours, 'x_requests_total', 'Requests.', ['status', 'stream'])
  const ref = new Counter({ name: 'x_requests_total', help: 'Requests.', labelNames: ['status', 'stream'], registers: [theirs] })
  for (const [status, stream] of [
    ['complete', 'false'],
    ['complete', 'false'],
    ['no_provider_available', 'true'],
    ['complete', 'true'],
  ] as const) {
    hot.inc(status, stream)
    ref.inc({ status, stream })
  }
  t.equal(await ours.metrics(), await theirs.metrics())
  t.match(await ours.metrics(), /x_requests_total\{status="complete",stream="false"\} 2/)
})

t.test('a HotHistogram writes what a prom-client Histogram writes', async (t) => {
  const ours = new Registry()
  const theirs = new Registry()
  const hot = new HotHistogram(ours, 'x_duration_seconds', 'Duration.', ['stream'], BUCKETS)
  const ref = new Histogram({ name: 'x_duration_seconds', help: 'Duration.', labelNames: ['stream'], buckets: BUCKETS, registers: [theirs] })
  for (const [v, stream] of SAMPLES) {
    hot.observe(v, stream)
    // prom-client throws on a non-finite value; ours drops it (a clock can never produce one).
    if (Number.isFinite(v)) ref.observe({ stream }, v)
  }
  const text = await ours.metrics()
  t.equal(text, await theirs.metrics())
  t.match(text, /x_duration_seconds_bucket\{le="0.01",stream="false"\} 2/)
  t.match(text, /x_duration_seconds_bucket\{le="\+Inf",stream="false"\} 4/)
  t.match(text, /x_duration_seconds_count\{stream="true"\} 2/)
})

t.test('an empty hot metric writes only its HELP and TYPE lines, as prom-client does', async (t) => {
  const ours = new Registry()
  const theirs = new Registry()
  new HotHistogram(ours, 'y_seconds', 'Y.', ['stream'], BUCKETS)
  new Histogram({ name: 'y_seconds', help: 'Y.', labelNames: ['stream'], buckets: BUCKETS, registers: [theirs] })
  t.equal(await ours.metrics(), await theirs.metrics())
})
