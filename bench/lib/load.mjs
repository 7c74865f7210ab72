import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { forkChild, nextMessage, stopChild } from './children.mjs'
import { cpuWindow, rssKb } from './proc-stat.mjs'

const worker = path.join(path.dirname(fileURLToPath(import.meta.url)), '../load/autocannon-worker.mjs')

/**
 * One autocannon pass against `url`: warm-up (unrecorded), then the measured window, over which
 * the CPU time of `pids` (the process under test first) is sampled from /proc.
 */
export async function httpLoad({ url, body, connections, warmupS, durationS, pids }) {
  const child = forkChild(worker, [JSON.stringify({ url, body, connections, warmupS, durationS })])
  try {
    await nextMessage(child, 'measuring', (warmupS + 30) * 1000)
    const window = cpuWindow(pids)
    const result = await nextMessage(child, 'result', (durationS + 30) * 1000)
    const cpu = window.stop()
    return { ...result, cpuMs: cpu.cpuMs, wallMs: cpu.wallMs, machineBusy: cpu.machineBusy, otherPct: cpu.otherPct, rssKb: rssKb(pids[0]) }
  } finally {
    await stopChild(child)
  }
}

/** The fields of a measured load window that every section reports as they are. */
export function runBasics(r) {
  return {
    target: r.target,
    stream: r.stream,
    c: r.c,
    round: r.round,
    reqPerS: r.reqPerS,
    ok: r.ok,
    non2xx: r.non2xx,
    errors: r.errors,
    p50Ms: r.p50Ms,
    p99Ms: r.p99Ms,
    machineBusyPct: 100 * r.machineBusy,
    otherCpuPct: r.otherPct,
    attempts: r.attempts,
  }
}
