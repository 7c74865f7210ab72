import { execFileSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'

export function machineInfo() {
  let ulimit = null
  try {
    ulimit = execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim()
  } catch {
    // reported as unknown
  }
  return {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    kernel: os.release(),
    ulimitNofile: ulimit,
    loadavg: os.loadavg(),
  }
}

const fmt = (v) => {
  if (v === null || v === undefined || Number.isNaN(v)) return '—'
  if (typeof v !== 'number') return String(v)
  if (Number.isInteger(v)) return v.toLocaleString('en-US')
  if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString('en-US')
  if (Math.abs(v) >= 100) return v.toFixed(0)
  if (Math.abs(v) >= 10) return v.toFixed(1)
  return v.toFixed(2)
}

export function renderMarkdown(result) {
  const lines = []
  const { meta } = result
  lines.push(`# poolcoord benchmark, ${meta.date}${meta.quick ? ' (quick: tiny sizes, figures not meaningful)' : ''}`)
  lines.push('')
  lines.push(
    `Machine: ${meta.machine.cpus} × ${meta.machine.cpuModel}, ${meta.machine.memGiB} GiB, Node ${meta.machine.node}, kernel ${meta.machine.kernel}, \`ulimit -n\` ${meta.machine.ulimitNofile}. ` +
      `Run took ${(meta.elapsedS / 60).toFixed(1)} min; sections: ${meta.sections.join(', ')}; rounds per cell: ${meta.rounds}; HTTP cells: ${meta.sizes.warmupS} s warm-up + ${meta.sizes.durationS} s measured.`,
  )
  lines.push('')
  const other = collect(result.details, 'otherCpuPct').sort((a, b) => a - b)
  if (other.length > 0) {
    lines.push(
      `Foreign load (CPU of processes outside this bench run and PostgreSQL, plus hypervisor steal time) over the ${other.length} measured windows: median ${other[Math.floor(other.length / 2)].toFixed(0)}%, max ${other[other.length - 1].toFixed(0)}% of one core.`,
    )
    lines.push('')
  }
  lines.push(
    'Every ratio is poolcoord ÷ its baseline measured in this same run. For req/s and rates higher is better; for CPU, latency and RSS lower is better. The box is shared and has 2 vCPUs: treat ratio differences under ~15% as noise; CPU per request is the steadier figure.',
  )
  lines.push('')
  lines.push('| scenario | measure | poolcoord | baseline | ratio | goal | met? | note |')
  lines.push('|---|---|---|---|---|---|---|---|')
  for (const r of result.rows) {
    const unit = r.unit ? ` ${r.unit}` : ''
    lines.push(
      `| ${r.scenario} | ${r.measure} | ${fmt(r.value)}${unit} | ${r.baseline === null ? '—' : fmt(r.baseline) + unit} | ${r.ratio === null ? '—' : r.ratio.toFixed(2) + '×'} | ${r.goal ?? '—'} | ${meta.quick && r.met !== '—' ? `(${r.met})` : r.met} | ${r.note ?? ''} |`,
    )
  }
  if (result.errors.length > 0) {
    lines.push('')
    lines.push('## Errors')
    for (const e of result.errors) lines.push(`- **${e.section}**: ${e.message.split('\n')[0]}`)
  }
  lines.push('')
  lines.push('## Baselines')
  lines.push(
    '- **ideal relay** (`bench/baselines/ideal-relay.mjs` + `providers/instant-provider.mjs relay`): HTTP in, one JSON frame over one WebSocket, answered at once; the JSON answer in one frame, or 20 SSE chunk frames and an end frame written through as they arrive.',
  )
  lines.push(
    '- **raw ws accept** (`bench/baselines/ws-hold-server.mjs`): a bare `ws` server that accepts and holds connections, from the same client processes at the same concurrency.',
  )
  lines.push(
    "- **raw Postgres** (`bench/baselines/pg-update.mjs`): the validate-and-mark UPDATE from node-postgres, 16 in flight over a pool of 10 (the coordinator's pool size), unnamed and named statement.",
  )
  lines.push(
    '- **PGlite alone** (`bench/baselines/pglite-default.mjs`): `PGlite.create(<dir>)` with its defaults in a process of its own, one query, then idle: on an empty directory that is initdb in the process, as the embedded coordinator did before its seed.',
  )
  for (const [section, d] of Object.entries(result.details)) {
    lines.push('')
    lines.push(`## Details: ${section}`)
    lines.push('')
    lines.push('```json')
    lines.push(JSON.stringify(d, (_k, v) => (typeof v === 'number' && !Number.isInteger(v) ? Number(v.toFixed(3)) : v), 1))
    lines.push('```')
  }
  if (result.profiles.length > 0) {
    lines.push('')
    lines.push('## CPU profiles (`--profile`): the coordinator, and the baseline servers for comparison')
    lines.push('')
    lines.push(
      "Each profile covers its process's whole life in that section (warm-up and every cell), and profiling itself slows the process down: read the shares, not the absolute times.",
    )
    for (const p of result.profiles) {
      lines.push('')
      lines.push(`### ${p.file}: ${fmt(p.busyMs)} ms busy, ${fmt(p.idleMs)} ms idle`)
      lines.push('')
      lines.push('| self % | self ms | function |')
      lines.push('|---|---|---|')
      for (const f of p.functions) lines.push(`| ${f.pct.toFixed(1)} | ${fmt(f.selfMs)} | \`${f.name}\` |`)
      lines.push('')
      lines.push('| self % | module |')
      lines.push('|---|---|')
      for (const m of p.modules) lines.push(`| ${m.pct.toFixed(1)} | \`${m.name}\` |`)
      lines.push('')
      lines.push('| incl. % | nearest coordinator function on the stack (library and kernel time charged to it) |')
      lines.push('|---|---|')
      for (const o of p.owners) lines.push(`| ${o.pct.toFixed(1)} | \`${o.name}\` |`)
    }
  }
  return lines.join('\n') + '\n'
}

function collect(node, key, out = []) {
  if (Array.isArray(node)) for (const v of node) collect(v, key, out)
  else if (node !== null && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      if (k === key && typeof v === 'number') out.push(v)
      else collect(v, key, out)
    }
  }
  return out
}

export function writeResults(dir, result) {
  mkdirSync(dir, { recursive: true })
  const base = path.join(dir, `${result.meta.date}${result.meta.quick ? '-quick' : ''}`)
  writeFileSync(`${base}.json`, JSON.stringify(result, null, 1) + '\n')
  writeFileSync(`${base}.md`, renderMarkdown(result))
  return { md: `${base}.md`, json: `${base}.json` }
}
