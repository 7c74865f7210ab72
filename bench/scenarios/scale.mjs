import { forkChild, nextMessage, stopChild } from '../lib/children.mjs'
import { freePort, startCoordinator } from '../lib/coordinator.mjs'
import { createDatabase, dropDatabase, seedTokens } from '../lib/database.mjs'
import { broadcast, closeAll, connectAll, startFleet, stopFleet } from '../lib/fleet.mjs'
import { cpuWindow, rssKb } from '../lib/proc-stat.mjs'
import { reportRow, row } from '../lib/rows.mjs'
import { sleep } from '../lib/stats.mjs'

/**
 * Many admitted providers heartbeating: the coordinator's RSS per session and its CPU per
 * heartbeat, against a bare ws server holding the same connections from the same clients with
 * the same heartbeat frames. Each server is a fresh process; RSS is read from /proc (the
 * process cannot read it itself at the fd limit).
 */
export async function runScale(env) {
  const { adminUrl, workDir, profileDir, sizes } = env
  const n = sizes.sessions
  const fleet = startFleet(Math.max(2, Math.ceil(n / 5000)))
  try {
    env.log(`scale: coordinator with ${n} sessions`)
    const coordResult = await measureCoordinator(env, fleet, n)
    await closeAll(fleet)
    env.log(`scale: bare ws server with ${n} connections`)
    const rawResult = await measureRaw(env, fleet, n)
    await closeAll(fleet)
    const scenario = `${n.toLocaleString('en-US')} admitted providers, heartbeat every ${sizes.heartbeatMs / 1000} s`
    const rows = [
      row({
        scenario,
        measure: 'RSS per session vs raw ws connection',
        unit: 'KiB',
        value: coordResult.rssPerKb,
        baseline: rawResult.rssPerKb,
        better: 'lower',
        goal: { op: '<=', x: 2 },
        note: `RSS ${mib(coordResult.rss0)} → ${mib(coordResult.rss1)} MiB vs ${mib(rawResult.rss0)} → ${mib(rawResult.rss1)} MiB`,
      }),
      reportRow({
        scenario,
        measure: 'CPU per heartbeat vs raw frame receipt',
        unit: 'µs',
        value: coordResult.cpuUsPerHeartbeat,
        baseline: rawResult.cpuUsPerHeartbeat,
        note: `${coordResult.heartbeats} heartbeats in ${(coordResult.windowMs / 1000).toFixed(0)} s; coordinator at ${coordResult.cpuPct.toFixed(1)}% of a core`,
      }),
      reportRow({
        scenario,
        measure: 'admissions/s while filling the pool vs raw accepts/s',
        unit: '/s',
        value: coordResult.join.perS,
        baseline: rawResult.join.perS,
        note: `${coordResult.join.ok} of ${n} admitted${coordResult.join.failed ? `; failures ${JSON.stringify(coordResult.join.outcomes)}` : ''}`,
      }),
    ]
    return { rows, details: { n, coordinator: coordResult, raw: rawResult } }
  } finally {
    await stopFleet(fleet)
  }
}

const mib = (kb) => (kb / 1024).toFixed(0)

async function measureCoordinator(env, fleet, n) {
  const { adminUrl, workDir, profileDir, sizes } = env
  const db = await createDatabase(adminUrl)
  let coord = null
  try {
    coord = await startCoordinator({ dbUrl: db.url, port: await freePort(), workDir, profileDir, label: 'coordinator-scale' })
    await seedTokens(db.url, 0, n)
    await sleep(1000)
    const rss0 = rssKb(coord.pid)
    const join = await connectAll(fleet, {
      url: coord.wsUrl,
      protocol: 'poolcoord',
      auth: 'seeded',
      count: n,
      inflight: 64,
      pids: [coord.pid],
      timeoutMs: 600_000,
    })
    const total = (await coord.health()).pool.total
    const hb = await heartbeatWindow(fleet, coord.pid, sizes)
    const rss1 = rssKb(coord.pid)
    return { rss0, rss1, sessions: total, rssPerKb: (rss1 - rss0) / total, join: summary(join), ...hb }
  } finally {
    if (coord !== null) await coord.stop(30_000)
    await dropDatabase(adminUrl, db.name)
  }
}

async function measureRaw(env, fleet, n) {
  const port = await freePort()
  const raw = forkChild(new URL('../baselines/ws-hold-server.mjs', import.meta.url).pathname, [String(port)])
  try {
    await nextMessage(raw, 'ready', 15_000)
    await sleep(1000)
    const rss0 = rssKb(raw.pid)
    const join = await connectAll(fleet, { url: `ws://127.0.0.1:${port}/`, protocol: 'raw', count: n, inflight: 64, pids: [raw.pid], timeoutMs: 600_000 })
    const hb = await heartbeatWindow(fleet, raw.pid, env.sizes)
    const rss1 = rssKb(raw.pid)
    return { rss0, rss1, sessions: join.ok, rssPerKb: (rss1 - rss0) / join.ok, join: summary(join), ...hb }
  } finally {
    await stopChild(raw)
  }
}

/** Heartbeats start, settle for one interval, then the measured window. */
async function heartbeatWindow(fleet, pid, sizes) {
  await broadcast(fleet, { cmd: 'heartbeats', intervalMs: sizes.heartbeatMs })
  await sleep(sizes.heartbeatMs)
  const before = await broadcast(fleet, { cmd: 'count' })
  const window = cpuWindow([pid])
  await sleep(sizes.heartbeatWindowMs)
  const cpu = window.stop()
  const after = await broadcast(fleet, { cmd: 'count' })
  await broadcast(fleet, { cmd: 'heartbeats', intervalMs: 0 })
  const heartbeats = after.reduce((a, r) => a + r.heartbeatsSent, 0) - before.reduce((a, r) => a + r.heartbeatsSent, 0)
  const open = after.reduce((a, r) => a + r.open, 0)
  return {
    heartbeats,
    open,
    windowMs: cpu.wallMs,
    cpuUsPerHeartbeat: (cpu.cpuMs[0] * 1000) / heartbeats,
    cpuPct: (100 * cpu.cpuMs[0]) / cpu.wallMs,
    otherCpuPct: cpu.otherPct,
  }
}

function summary(join) {
  return { ok: join.ok, failed: join.failed, outcomes: join.outcomes, perS: join.perS, latency: join.latency }
}
