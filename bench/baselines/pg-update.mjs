// Baseline: the validate-and-mark UPDATE alone, from node-postgres, `inflight` at a time over a
// pool of `pool` connections (the coordinator's pool size), with the token hash computed per
// operation as the coordinator does. argv[2]: JSON {url, tokens, inflight, pool, warmupS, durationS, named}
import { createHash } from 'node:crypto'
import pg from 'pg'
import { benchToken } from '../lib/tokens.mjs'

const opts = JSON.parse(process.argv[2])
process.on('disconnect', () => process.exit(0))
const TEXT = 'UPDATE provider_tokens SET last_used_at = now() WHERE token_hash = $1 AND revoked_at IS NULL RETURNING provider_id'
const tokens = Array.from({ length: opts.tokens }, (_, i) => benchToken(i))
const pool = new pg.Pool({ connectionString: opts.url, max: opts.pool })

async function run(durationS, latencies) {
  const end = performance.now() + durationS * 1000
  let done = 0
  let missed = 0
  const worker = async () => {
    while (performance.now() < end) {
      const hash = createHash('sha256')
        .update(tokens[Math.floor(Math.random() * tokens.length)])
        .digest('hex')
      const started = performance.now()
      const res = await pool.query(opts.named ? { name: 'bench_admit', text: TEXT, values: [hash] } : { text: TEXT, values: [hash] })
      latencies?.push(performance.now() - started)
      if (res.rowCount === 1) done++
      else missed++
    }
  }
  const started = performance.now()
  await Promise.all(Array.from({ length: opts.inflight }, worker))
  return { done, missed, wallMs: performance.now() - started }
}

await run(opts.warmupS, null)
process.send({ type: 'measuring' })
const cpu0 = process.cpuUsage()
const latencies = []
const r = await run(opts.durationS, latencies)
const cpu = process.cpuUsage(cpu0)
latencies.sort((a, b) => a - b)
await pool.end()
process.send({
  type: 'result',
  opsPerS: r.done / (r.wallMs / 1000),
  done: r.done,
  missed: r.missed,
  p50Ms: latencies[Math.floor(latencies.length * 0.5)],
  p99Ms: latencies[Math.floor(latencies.length * 0.99)],
  clientCpuUsPerOp: (cpu.user + cpu.system) / r.done,
})
process.disconnect()
