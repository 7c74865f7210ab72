// HTTP load in its own process, so that it shares no event loop with what is measured.
// Runs an unrecorded warm-up, tells the runner `measuring` (it samples CPU then), runs the
// measured pass and sends back the counts and latency percentiles with sub-millisecond
// precision (autocannon's own histogram is in whole milliseconds).
// argv[2]: JSON {url, body, connections, warmupS, durationS}
import autocannon from 'autocannon'

const opts = JSON.parse(process.argv[2])
process.on('disconnect', () => process.exit(0))

function run(durationS, latencies) {
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: opts.url,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: opts.body,
        connections: opts.connections,
        duration: durationS,
        // autocannon checks for the end of a run once per sample: sub-second runs would last 1 s.
        sampleInt: Math.min(1000, durationS * 1000),
        timeout: 10,
      },
      (err, result) => (err ? reject(err) : resolve(result)),
    )
    if (latencies !== null) {
      instance.on('response', (_client, status, _bytes, ms) => {
        if (status === 200) latencies.push(ms)
      })
    }
  })
}

function percentile(sorted, p) {
  if (sorted.length === 0) return null
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]
}

if (opts.warmupS > 0) await run(opts.warmupS, null)
process.send({ type: 'measuring' })
const latencies = []
const r = await run(opts.durationS, latencies)
const sorted = Float64Array.from(latencies).sort()
process.send({
  type: 'result',
  ok: r['2xx'],
  non2xx: r.non2xx,
  errors: r.errors,
  timeouts: r.timeouts,
  durationS: r.duration,
  reqPerS: r['2xx'] / r.duration,
  p50Ms: percentile(sorted, 50),
  p99Ms: percentile(sorted, 99),
  bytesPerS: r.throughput.average,
})
process.disconnect()
