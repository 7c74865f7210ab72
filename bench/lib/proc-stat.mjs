import { execFileSync } from 'node:child_process'
import { readFileSync, readdirSync } from 'node:fs'

let ticksPerSecond = 100
try {
  ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
} catch {
  // getconf is missing on some minimal images; 100 is the Linux default.
}

/** user+sys CPU time of a process in milliseconds, from /proc/<pid>/stat (Linux only). */
export function cpuMs(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // The command name may contain spaces; the fields after it are fixed.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const ticks = Number(fields[11]) + Number(fields[12])
  return (ticks * 1000) / ticksPerSecond
}

/** Resident set size of a process in KiB, from /proc/<pid>/status. */
export function rssKb(pid) {
  return statusKb(pid, 'VmRSS')
}

/** The most resident set size the process has had (its high-water mark), in KiB. */
export function peakRssKb(pid) {
  return statusKb(pid, 'VmHWM')
}

function statusKb(pid, field) {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) : NaN
}

/**
 * Busy and total CPU ticks of the whole machine, to tell how loaded the box was, and the steal
 * ticks: time the hypervisor gave our vCPUs' turn to another guest.
 */
export function systemTicks() {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]
  const v = line.trim().split(/\s+/).slice(1).map(Number)
  const idle = v[3] + v[4]
  const total = v.reduce((a, b) => a + b, 0)
  return { busy: total - idle, total, steal: v[7] ?? 0 }
}

/** pid → {ppid, comm, cpuMs} for every process on the machine. */
function allProcesses() {
  const out = new Map()
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8')
      const close = stat.lastIndexOf(')')
      const fields = stat.slice(close + 2).split(' ')
      out.set(Number(name), {
        ppid: Number(fields[1]),
        comm: stat.slice(stat.indexOf('(') + 1, close),
        cpuMs: ((Number(fields[11]) + Number(fields[12])) * 1000) / ticksPerSecond,
      })
    } catch {
      // exited while we looked
    }
  }
  return out
}

/** CPU used by every postgres process (ours and anyone else's). */
function postgresCpuMs(before, after) {
  let ms = 0
  for (const [pid, info] of after) if (info.comm === 'postgres') ms += info.cpuMs - (before.get(pid)?.cpuMs ?? 0)
  return ms
}

/** CPU used by processes that are neither this bench run's (descendants of the runner) nor postgres. */
function foreignCpuMs(before, after) {
  const ours = (pid, procs) => {
    for (let p = pid, hops = 0; p > 1 && hops < 20; hops++) {
      if (p === process.pid) return true
      p = procs.get(p)?.ppid ?? 0
    }
    return false
  }
  let ms = 0
  for (const [pid, info] of after) {
    // Kernel threads (softirq, kworkers) mostly carry our own loopback traffic.
    if (info.comm === 'postgres' || pid === 2 || info.ppid === 2 || ours(pid, after)) continue
    ms += info.cpuMs - (before.get(pid)?.cpuMs ?? 0)
  }
  return ms
}

/**
 * Samples the CPU of `pids` (the process under test first) and the machine's load over a
 * window. `otherPct` is someone else's load on the shared box, in % of one core: the CPU of
 * processes outside this bench run other than postgres, plus the hypervisor's steal time
 * (`stealPct`, another guest on the same host; on this kind of VM it has reached a third of a
 * core for seconds at a time, slowing the process under test and its baseline unevenly).
 */
export function cpuWindow(pids) {
  const start = { at: performance.now(), cpu: pids.map(cpuMs), sys: systemTicks(), procs: allProcesses() }
  return {
    stop() {
      const cpu = pids.map((p, i) => cpuMs(p) - start.cpu[i])
      const sys = systemTicks()
      const wallMs = performance.now() - start.at
      const machineBusy = (sys.busy - start.sys.busy) / (sys.total - start.sys.total || 1)
      const procs = allProcesses()
      const stealPct = (100 * ((sys.steal - start.sys.steal) * 1000)) / ticksPerSecond / wallMs
      const otherPct = (100 * foreignCpuMs(start.procs, procs)) / wallMs + stealPct
      return { wallMs, cpuMs: cpu, machineBusy, otherPct, stealPct, postgresMs: postgresCpuMs(start.procs, procs) }
    },
  }
}

export const CLK_TCK = ticksPerSecond
