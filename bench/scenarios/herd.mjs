import { freePort, startCoordinator } from '../lib/coordinator.mjs'
import { createDatabase, dropDatabase, seedTokens } from '../lib/database.mjs'
import { broadcast, connectAll, mergeHerdStats, startFleet, stopFleet } from '../lib/fleet.mjs'
import { absoluteRow, reportRow } from '../lib/rows.mjs'
import { sleep } from '../lib/stats.mjs'

/**
 * Reconnect herd: N providers admitted with their tokens, the coordinator stopped with SIGTERM
 * and a new one started on the same database and port. Every provider reconnects on its own
 * with capped exponential backoff and full jitter. Measured: time until the new coordinator
 * reports all N routable, and every refusal on the way (4005 with a valid token is wrongful).
 */
export async function runHerd(env) {
  const { adminUrl, workDir, profileDir, sizes } = env
  const n = sizes.herd
  const backoff = { baseMs: sizes.herdBaseMs, capMs: sizes.herdCapMs }
  const db = await createDatabase(adminUrl)
  const port = await freePort()
  const fleet = startFleet(Math.max(2, Math.ceil(n / 2500)))
  let coord = null
  try {
    coord = await startCoordinator({ dbUrl: db.url, port, workDir, profileDir, label: 'coordinator-herd-1' })
    await seedTokens(db.url, 0, n)
    const joined = await connectAll(fleet, { url: coord.wsUrl, protocol: 'poolcoord', auth: 'seeded', count: n, inflight: 64 })
    if (joined.ok !== n) throw new Error(`herd: only ${joined.ok} of ${n} providers joined: ${JSON.stringify(joined.outcomes)}`)
    await broadcast(fleet, { cmd: 'herd', ...backoff, deadlineMs: sizes.herdTimeoutS * 1000 + 30_000 })

    env.log(`herd: ${n} providers up; restarting the coordinator`)
    const t0 = performance.now()
    await coord.stop()
    const stoppedAt = performance.now() - t0
    coord = null
    coord = await startCoordinator({ dbUrl: db.url, port, workDir, profileDir, label: 'coordinator-herd-2' })
    const readyAt = performance.now() - t0

    let allRoutableAt = null
    let routable = 0
    const deadline = performance.now() + sizes.herdTimeoutS * 1000
    while (performance.now() < deadline) {
      routable = (await coord.health()).pool.routable
      if (routable >= n) {
        allRoutableAt = performance.now() - t0
        break
      }
      await sleep(100)
    }
    // Late stragglers get a moment, so that the refusal counts are final.
    await sleep(500)
    const stats = await broadcast(fleet, { cmd: 'herd-stats' })
    const poolz = await coord.poolz()
    const merged = mergeHerdStats(stats)
    const wrongful = (merged.lost['close:4005'] ?? 0) + (merged.outcomes['close:4005'] ?? 0)
    const bearer = poolz.summary.by_auth_state.bearer_validated
    const details = {
      n,
      backoff,
      stoppedAtS: stoppedAt / 1000,
      readyAtS: readyAt / 1000,
      allRoutableAtS: allRoutableAt === null ? null : allRoutableAt / 1000,
      routable,
      bearerValidated: bearer,
      ...merged,
    }
    const scenario = `reconnect herd, ${n.toLocaleString('en-US')} providers, coordinator restarted`
    const rows = [
      absoluteRow({
        scenario,
        measure: 'providers routable again',
        unit: 'providers',
        value: routable,
        goal: `all ${n}`,
        met: routable === n && bearer === n,
        note: `${bearer} bearer_validated in /poolz`,
      }),
      absoluteRow({ scenario, measure: 'wrongful rejections (4005)', unit: 'closes', value: wrongful, goal: '0', met: wrongful === 0 }),
      reportRow({
        scenario,
        measure: 'seconds from SIGTERM to all routable',
        unit: 's',
        value: details.allRoutableAtS,
        note: `old process gone after ${details.stoppedAtS.toFixed(2)} s, new one healthy at ${details.readyAtS.toFixed(2)} s; backoff ${backoff.baseMs} ms doubling to ${backoff.capMs} ms, full jitter`,
      }),
      reportRow({
        scenario,
        measure: 'reconnect attempts per provider',
        unit: 'attempts',
        value: merged.attempts / n,
        note: `refusals on the way: ${JSON.stringify(merged.outcomes)}`,
      }),
    ]
    return { rows, details }
  } finally {
    await stopFleet(fleet)
    if (coord !== null) await coord.stop()
    await dropDatabase(adminUrl, db.name)
  }
}
