import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { forkChild, request, stopChild } from './children.mjs'
import { cpuWindow } from './proc-stat.mjs'
import { summarize } from './stats.mjs'

const script = path.join(path.dirname(fileURLToPath(import.meta.url)), '../providers/fleet.mjs')
let nextBlock = 10

/** A fresh 127.<block>.0.0/16 for one batch of connections: no source address is ever reused in a run. */
export function freshBlock() {
  if (nextBlock > 250) throw new Error('out of loopback address blocks')
  return nextBlock++
}

/** Provider client processes, each holding up to a few thousand connections. */
export function startFleet(processes) {
  return Array.from({ length: processes }, () => forkChild(script))
}

export async function stopFleet(fleet) {
  await Promise.all(fleet.map((c) => stopChild(c)))
}

/**
 * Opens `count` connections (ids from..from+count-1) split over the fleet, with `inflight`
 * handshakes in flight in total, while sampling the CPU of `pids`. Returns the rate (over the
 * runner's wall clock) and the client-side latency to hello_ack (or open, for raw).
 */
export async function connectAll(fleet, { count, from = 0, inflight, pids = [], timeoutMs = 300_000, ...rest }) {
  const block = freshBlock()
  const per = Math.ceil(count / fleet.length)
  const window = cpuWindow(pids)
  const replies = await Promise.all(
    fleet.map((child, k) => {
      const n = Math.max(0, Math.min(per, count - k * per))
      const share = Math.max(1, Math.round((inflight * n) / count))
      return request(child, { cmd: 'connect', from: from + k * per, count: n, inflight: share, block, ...rest }, timeoutMs)
    }),
  )
  const cpu = window.stop()
  for (const r of replies) if (r.error) throw new Error(r.error)
  const ok = replies.reduce((a, r) => a + r.ok, 0)
  const outcomes = {}
  for (const r of replies) for (const [k, v] of Object.entries(r.outcomes)) outcomes[k] = (outcomes[k] ?? 0) + v
  const latencies = summarize(replies.flatMap((r) => r.latencies))
  return {
    ok,
    failed: count - ok,
    outcomes,
    perS: ok / (cpu.wallMs / 1000),
    wallMs: cpu.wallMs,
    cpuMs: cpu.cpuMs,
    machineBusy: cpu.machineBusy,
    otherPct: cpu.otherPct,
    postgresMs: cpu.postgresMs,
    latency: latencies,
  }
}

/** Sends one command to every fleet process and returns the replies. */
export async function broadcast(fleet, msg, timeoutMs = 60_000) {
  const replies = await Promise.all(fleet.map((c) => request(c, msg, timeoutMs)))
  for (const r of replies) if (r.error) throw new Error(r.error)
  return replies
}

export async function closeAll(fleet) {
  return broadcast(fleet, { cmd: 'close-all' })
}

/** The herd stats of every fleet process, summed (counts per key merged; the latest reconnect kept). */
export function mergeHerdStats(stats) {
  const sum = (key) => stats.reduce((a, s) => a + (s[key] ?? 0), 0)
  const mergeCounts = (key) => {
    const out = {}
    for (const s of stats) for (const [k, v] of Object.entries(s[key] ?? {})) out[k] = (out[k] ?? 0) + v
    return out
  }
  const last = stats.map((s) => s.lastBackAt).filter((t) => t !== null && t !== undefined)
  return {
    back: sum('back'),
    attempts: sum('attempts'),
    open: sum('open'),
    openByUrl: mergeCounts('openByUrl'),
    lastBackAt: last.length === 0 ? null : Math.max(...last),
    lost: mergeCounts('lost'),
    outcomes: mergeCounts('outcomes'),
  }
}
