import { forkChild, nextMessage, stopChild } from '../lib/children.mjs'
import { freePort, logEvents, startCoordinator } from '../lib/coordinator.mjs'
import { createDatabase, dropDatabase, seedKeyedProviders, seedTokens, settleTable } from '../lib/database.mjs'
import { broadcast, closeAll, connectAll, startFleet, stopFleet } from '../lib/fleet.mjs'
import { cpuWindow } from '../lib/proc-stat.mjs'
import { reportRow, row } from '../lib/rows.mjs'
import { median, sleep } from '../lib/stats.mjs'

/**
 * Connection admission on real Postgres: bearer admissions (upgrade, validate-and-mark UPDATE,
 * hello, hello_ack) against a bare ws server accepting the same connections from the same
 * clients, and tokenless mints of fresh ids. 64 in flight, for both targets alike: the
 * coordinator's pending-connection cap was 64 when these rows were first measured (it is 256 now,
 * protocol.md §1.3), and the rows stay comparable with earlier runs.
 * Identity v2 admissions (bearer + key proof: upgrade offering poolcoord.v2, validate-and-mark,
 * auth_init, auth_challenge, auth_proof, hello_ack key_proven) of key-pinned ids run in the same
 * rounds as the v1 bearer admissions, the two in alternating order, and are reported against
 * them. The pinned ids are a range of their own (ids n+warm…): a pinned id refuses a v1 hello.
 * Then the raw UPDATE from node-postgres, unnamed and named.
 */
export async function runAdmission(env) {
  const { adminUrl, workDir, profileDir, sizes } = env
  const n = sizes.admissions
  const warm = sizes.admissionWarmup
  const inflight = sizes.admissionInflight
  const db = await createDatabase(adminUrl)
  let coord = null
  let raw = null
  const fleet = startFleet(Math.max(2, Math.ceil(n / 5000)))
  try {
    coord = await startCoordinator({ dbUrl: db.url, port: await freePort(), workDir, profileDir, label: 'coordinator-admission' })
    // Ids 0…n+warm-1: v1 bearers; n+warm…2(n+warm)-1: key-pinned, for v2. Each connection's
    // source address derives from its id, at most 63,750 per block (providers/fleet.mjs).
    const keyedFrom = n + warm
    if (2 * keyedFrom > 63_750) throw new Error(`admission: ${n} admissions + ${warm} warm-up, twice, exceed the 63,750 source addresses of a block`)
    await seedTokens(db.url, 0, keyedFrom)
    await seedKeyedProviders(db.url, keyedFrom, n + warm)
    await broadcast(fleet, { cmd: 'keys', from: keyedFrom, count: n + warm })
    const rawPort = await freePort()
    const rawProfile = profileDir === null ? null : { dir: profileDir, name: 'baseline-ws-accept' }
    raw = forkChild(new URL('../baselines/ws-hold-server.mjs', import.meta.url).pathname, [String(rawPort)], {}, rawProfile)
    await nextMessage(raw, 'ready', 15_000)
    const rawUrl = `ws://127.0.0.1:${rawPort}/`
    const bearer = { url: coord.wsUrl, protocol: 'poolcoord', auth: 'seeded', inflight }
    const keyed = { url: coord.wsUrl, protocol: 'poolcoord', auth: 'seeded-key', inflight }
    // The measured process first, then the provider processes (their CPU: clientCpuUsPer).
    const clients = fleet.map((c) => c.pid)

    env.log('admission: warm-up')
    await connectAll(fleet, { ...bearer, from: n, count: warm })
    await connectAll(fleet, { ...keyed, from: keyedFrom + n, count: warm })
    await connectAll(fleet, { url: coord.wsUrl, protocol: 'poolcoord', auth: 'none', idPrefix: 'warm-', count: warm, inflight })
    await closeAll(fleet)
    await connectAll(fleet, { url: rawUrl, protocol: 'raw', count: warm, inflight })
    await closeAll(fleet)
    await waitPoolEmpty(coord)

    env.log(`admission: ${sizes.mints} tokenless mints`)
    await settleTable(db.url)
    const mints = await connectAll(fleet, {
      url: coord.wsUrl,
      protocol: 'poolcoord',
      auth: 'none',
      idPrefix: 'mint-',
      count: sizes.mints,
      inflight,
      pids: [coord.pid],
    })
    await closeAll(fleet)
    await waitPoolEmpty(coord)

    const rawRuns = []
    const coordRuns = []
    const keyedRuns = []
    for (let round = 0; round < env.rounds; round++) {
      env.log(`admission: round ${round + 1}: ${n} raw ws accepts, ${n} v1 bearer admissions, ${n} v2 admissions (bearer + key proof)`)
      rawRuns.push(await connectAll(fleet, { url: rawUrl, protocol: 'raw', count: n, inflight, pids: [raw.pid, ...clients] }))
      await closeAll(fleet)
      for (const v2 of round % 2 === 0 ? [false, true] : [true, false]) {
        await settleTable(db.url)
        const run = await connectAll(
          fleet,
          v2 ? { ...keyed, from: keyedFrom, count: n, pids: [coord.pid, ...clients] } : { ...bearer, from: 0, count: n, pids: [coord.pid, ...clients] },
        )
        ;(v2 ? keyedRuns : coordRuns).push(run)
        await closeAll(fleet)
        await waitPoolEmpty(coord)
      }
    }

    const pgRuns = { unnamed: [], named: [] }
    for (let round = 0; round < env.rounds; round++) {
      for (const named of round % 2 === 0 ? [false, true] : [true, false]) {
        env.log(`admission: raw Postgres UPDATE, ${named ? 'named' : 'unnamed'} statement, round ${round + 1}`)
        await settleTable(db.url)
        pgRuns[named ? 'named' : 'unnamed'].push(await pgBaseline(db.url, n, named, sizes))
      }
    }
    const medianRun = (list) => ({ opsPerS: median(list.map((r) => r.opsPerS)), p99Ms: median(list.map((r) => r.p99Ms)) })
    const pg = { unnamed: medianRun(pgRuns.unnamed), named: medianRun(pgRuns.named) }
    const events = logEvents(coord.logFile)
    return {
      rows: [...rowsFor({ n, inflight, mints, rawRuns, coordRuns, pg }), ...keyedRows({ n, inflight, coordRuns, keyedRuns })],
      details: {
        inflight,
        mints: slim(mints),
        raw: rawRuns.map(slim),
        bearer: coordRuns.map(slim),
        keyed: keyedRuns.map(slim),
        keyedVsBearerPerRound: keyedRuns.map((r, i) => r.perS / coordRuns[i].perS),
        pg: pgRuns,
        coordinatorLogEvents: events,
      },
    }
  } finally {
    await stopFleet(fleet)
    if (raw !== null) await stopChild(raw)
    if (coord !== null) await coord.stop()
    await dropDatabase(adminUrl, db.name)
  }
}

async function pgBaseline(url, tokens, named, sizes) {
  const child = forkChild(new URL('../baselines/pg-update.mjs', import.meta.url).pathname, [
    JSON.stringify({ url, tokens, inflight: 16, pool: 10, warmupS: sizes.warmupS, durationS: sizes.durationS, named }),
  ])
  try {
    await nextMessage(child, 'measuring', (sizes.warmupS + 60) * 1000)
    const window = cpuWindow([child.pid])
    const result = await nextMessage(child, 'result', (sizes.durationS + 60) * 1000)
    return { ...result, otherCpuPct: window.stop().otherPct }
  } finally {
    await stopChild(child)
  }
}

/** Closed sessions leave the pool when the coordinator sees the close; wait for that. */
export async function waitPoolEmpty(coord, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if ((await coord.health()).pool.total === 0) return
    await sleep(100)
  }
  throw new Error('pool did not empty after the clients closed')
}

function slim(r) {
  return {
    ok: r.ok,
    failed: r.failed,
    outcomes: r.outcomes,
    perS: r.perS,
    wallMs: r.wallMs,
    cpuUsPer: r.cpuMs.length ? (r.cpuMs[0] * 1000) / r.ok : null,
    clientCpuUsPer: r.cpuMs.length > 1 ? (r.cpuMs.slice(1).reduce((a, b) => a + b, 0) * 1000) / r.ok : null,
    machineBusyPct: 100 * r.machineBusy,
    otherCpuPct: r.otherPct,
    postgresCpuUsPer: (r.postgresMs * 1000) / r.ok,
    latency: r.latency,
  }
}

function rowsFor({ n, inflight, mints, rawRuns, coordRuns, pg }) {
  const med = (runs, f) => median(runs.map((r) => f(slim(r))))
  const failed = coordRuns.reduce((a, r) => a + r.failed, 0)
  const scenario = `bearer admissions, ${n.toLocaleString('en-US')} at ${inflight} in flight, Postgres`
  const other = Math.max(...[...coordRuns, ...rawRuns].map((r) => r.otherPct))
  const noisy = other > 15 ? `; foreign load up to ${other.toFixed(0)}% of a core in a window: suspect` : ''
  const note = `${inflight} in flight, not 100: as in earlier runs, when the pre-admission cap was 64${failed ? `; ${failed} failed` : ''}${noisy}`
  /** A figure of the coordinator's runs against the same figure of the raw accepts. */
  const vsRaw = (measure, unit, pick) => ({ scenario, measure, unit, value: med(coordRuns, pick), baseline: med(rawRuns, pick) })
  return [
    row({ ...vsRaw('admissions/s vs raw ws accepts/s', '/s', (r) => r.perS), goal: { op: '>=', x: 0.6 }, note }),
    row({ ...vsRaw('p99 connect-to-ack vs connect-to-open', 'ms', (r) => r.latency.p99Ms), better: 'lower' }),
    reportRow(vsRaw('server CPU per admission vs per raw accept', 'µs', (r) => r.cpuUsPer)),
    reportRow({ scenario, measure: 'PostgreSQL CPU per admission (all postgres processes)', unit: 'µs', value: med(coordRuns, (r) => r.postgresCpuUsPer) }),
    reportRow({
      scenario,
      measure: 'admissions/s vs raw UPDATE/s (node-pg, 16 in flight, unnamed)',
      unit: '/s',
      value: med(coordRuns, (r) => r.perS),
      baseline: pg.unnamed.opsPerS,
    }),
    reportRow({
      scenario: 'raw Postgres validate-and-mark UPDATE, 16 in flight',
      measure: 'named vs unnamed statement',
      unit: 'UPDATE/s',
      value: pg.named.opsPerS,
      baseline: pg.unnamed.opsPerS,
      note: `p99 ${pg.named.p99Ms.toFixed(2)} vs ${pg.unnamed.p99Ms.toFixed(2)} ms`,
    }),
    reportRow({
      scenario: `tokenless mints of fresh ids, ${mints.ok.toLocaleString('en-US')}, Postgres`,
      measure: 'mints/s vs raw ws accepts/s',
      unit: '/s',
      value: mints.perS,
      baseline: med(rawRuns, (r) => r.perS),
      note: `p99 ${mints.latency.p99Ms?.toFixed(1)} ms; CPU ${((mints.cpuMs[0] * 1000) / mints.ok).toFixed(0)} µs per mint${mints.failed ? `; ${mints.failed} failed` : ''}`,
    }),
  ]
}

/** Identity v2 against v1, from the same rounds: the goal is a v2 admission rate of at least 0.8× v1's. */
function keyedRows({ n, inflight, coordRuns, keyedRuns }) {
  const med = (runs, f) => median(runs.map((r) => f(slim(r))))
  const failed = keyedRuns.reduce((a, r) => a + r.failed, 0)
  const outcomes = {}
  for (const r of keyedRuns) for (const [k, v] of Object.entries(r.outcomes)) outcomes[k] = (outcomes[k] ?? 0) + v
  const scenario = `v2 admissions (bearer + key proof) vs v1 bearer admissions, ${n.toLocaleString('en-US')} at ${inflight} in flight, Postgres`
  const other = Math.max(...[...coordRuns, ...keyedRuns].map((r) => r.otherPct))
  const noisy = other > 15 ? `; foreign load up to ${other.toFixed(0)}% of a core in a window: suspect` : ''
  const perRound = keyedRuns.map((r, i) => (r.perS / coordRuns[i].perS).toFixed(2)).join(', ')
  const why = Object.entries(outcomes).map(([k, v]) => `${k} ${v}`)
  const fails = failed ? `; ${failed} v2 failed (${why.join(', ')})` : ''
  const note = `v1 and v2 alternate round by round; per round ${perRound}${fails}${noisy}`
  const vsV1 = (measure, unit, pick) => ({ scenario, measure, unit, value: med(keyedRuns, pick), baseline: med(coordRuns, pick) })
  return [
    row({ ...vsV1('v2 admissions/s vs v1 admissions/s', '/s', (r) => r.perS), goal: { op: '>=', x: 0.8 }, note }),
    row({ ...vsV1('p50 connect-to-ack, v2 vs v1', 'ms', (r) => r.latency.p50Ms), better: 'lower' }),
    row({ ...vsV1('p99 connect-to-ack, v2 vs v1', 'ms', (r) => r.latency.p99Ms), better: 'lower' }),
    reportRow(vsV1('server CPU per admission, v2 vs v1', 'µs', (r) => r.cpuUsPer)),
    reportRow(vsV1('PostgreSQL CPU per admission, v2 vs v1 (all postgres processes)', 'µs', (r) => r.postgresCpuUsPer)),
    reportRow(vsV1('client CPU per admission, v2 vs v1 (the provider processes)', 'µs', (r) => r.clientCpuUsPer)),
  ]
}
