#!/usr/bin/env node
// npm run bench [-- --quick] [--only http,admission] [--profile] [--rounds N] ...
// Measures the coordinator (dist/, built by `npm run build`) against baselines measured in the
// same run, and writes bench/results/<date>.md and .json. See bench/README.md.
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { installCleanup, liveChildren, stopAll } from './lib/children.mjs'
import { summarizeProfiles } from './lib/cpu-profile.mjs'
import { dropOwnedDatabases, dropStaleDatabases } from './lib/database.mjs'
import { machineInfo, writeResults } from './lib/report.mjs'
import { runAdmission } from './scenarios/admission.mjs'
import { runAgent } from './scenarios/agent.mjs'
import { runCluster } from './scenarios/cluster.mjs'
import { runEmbedded } from './scenarios/embedded.mjs'
import { runHerd } from './scenarios/herd.mjs'
import { runHttp } from './scenarios/http.mjs'
import { runRouting } from './scenarios/routing.mjs'
import { runScale } from './scenarios/scale.mjs'

const SECTIONS = {
  routing: runRouting,
  http: runHttp,
  admission: runAdmission,
  herd: runHerd,
  scale: runScale,
  cluster: runCluster,
  agent: runAgent,
  embedded: runEmbedded,
}

const FULL = {
  warmupS: 2,
  durationS: 5,
  rounds: 2,
  routingPool: 1000,
  selectBudgetMs: 500,
  admissions: 5000,
  admissionWarmup: 500,
  admissionInflight: 64,
  mints: 2000,
  // RLIMIT_NOFILE is 20,000 (hard) and the coordinator needs a few dozen fds of its own.
  sessions: 19_800,
  heartbeatMs: 10_000,
  heartbeatWindowMs: 20_000,
  herd: 5000,
  herdBaseMs: 250,
  herdCapMs: 5000,
  herdTimeoutS: 60,
  // c1 for the latency goal, c16 for CPU under load.
  clusterCells: [
    { stream: false, c: 1 },
    { stream: true, c: 1 },
    { stream: false, c: 16 },
    { stream: true, c: 16 },
  ],
  clusterWarmupS: 2,
  clusterDurationS: 5,
  clusterHerd: 5000,
  // The coordinator's default: the failover time it measures is the one operators get.
  clusterTtlMs: 10_000,
  clusterHerdTimeoutS: 90,
  // A quiet window with the herd connected and heartbeating, against one before it connected.
  clusterHoldS: 5,
  // The provider agent's cells: the issue's 16-token answers, 16 in flight.
  agentCells: [
    { stream: false, c: 16 },
    { stream: true, c: 16 },
  ],
}
const QUICK = {
  ...FULL,
  // CI runs --quick to check that every section still runs: it judges nothing, so short windows.
  warmupS: 0.25,
  durationS: 0.5,
  rounds: 1,
  routingPool: 50,
  selectBudgetMs: 30,
  admissions: 200,
  admissionWarmup: 50,
  mints: 100,
  sessions: 200,
  heartbeatMs: 1000,
  heartbeatWindowMs: 2000,
  herd: 100,
  herdTimeoutS: 30,
  // Three targets per cell make this the slowest section per cell: c1 only, and short windows.
  clusterCells: [
    { stream: false, c: 1 },
    { stream: true, c: 1 },
  ],
  clusterWarmupS: 0.25,
  clusterDurationS: 0.5,
  clusterHerd: 300,
  // The shortest TTL the coordinator accepts, so that the failover fits CI's budget.
  clusterTtlMs: 3000,
  clusterHerdTimeoutS: 30,
  clusterHoldS: 0,
  // Both agent cells, at the quick warm-up and duration: about 10 s with start-up.
  agentCells: FULL.agentCells,
}

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    profile: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    duration: { type: 'string' },
    sessions: { type: 'string' },
    herd: { type: 'string' },
    'cluster-herd': { type: 'string' },
    admissions: { type: 'string' },
    'pg-url': { type: 'string', default: process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres' },
    out: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
})

if (args.help) {
  console.log(`usage: npm run bench -- [--quick] [--only ${Object.keys(SECTIONS).join(',')}] [--profile]
       [--rounds N] [--duration S] [--sessions N] [--herd N] [--cluster-herd N] [--admissions N] [--pg-url URL] [--out DIR]`)
  process.exit(0)
}

const here = path.dirname(fileURLToPath(import.meta.url))
const sizes = { ...(args.quick ? QUICK : FULL) }
if (args.rounds) sizes.rounds = positive(args.rounds, '--rounds')
if (args.duration) sizes.durationS = sizes.clusterDurationS = positive(args.duration, '--duration')
if (args.sessions) sizes.sessions = Math.min(positive(args.sessions, '--sessions'), 19_900)
if (args.herd) sizes.herd = positive(args.herd, '--herd')
// Every provider's socket sits in one of the fleet's processes and on one of three nodes: far below the fd limit either way.
if (args['cluster-herd']) sizes.clusterHerd = Math.min(positive(args['cluster-herd'], '--cluster-herd'), 15_000)
if (args.admissions) sizes.admissions = positive(args.admissions, '--admissions')
const only = args.only ? args.only.split(',').map((s) => s.trim()) : Object.keys(SECTIONS)
for (const s of only) if (!(s in SECTIONS)) fail(`unknown section ${s}; known: ${Object.keys(SECTIONS).join(', ')}`)

const date = new Date().toISOString().slice(0, 10)
const outDir = args.out ?? path.join(here, 'results')
const workDir = mkdtempSync(path.join(os.tmpdir(), 'poolcoord-bench-'))
const adminUrl = args['pg-url']
const started = performance.now()

installCleanup(async () => {
  await dropOwnedDatabases(adminUrl).catch(() => undefined)
  rmSync(workDir, { recursive: true, force: true })
})
// Every load loop is bounded on its own; this bounds the run as a whole.
setTimeout(() => process.emit('SIGTERM'), (args.quick ? 240 : 1800) * 1000).unref()

const result = {
  meta: { date, quick: args.quick, sections: only, rounds: sizes.rounds, sizes, machine: machineInfo() },
  rows: [],
  details: {},
  errors: [],
  profiles: [],
}
const log = (msg) => console.log(`[${((performance.now() - started) / 1000).toFixed(1).padStart(6)} s] ${msg}`)

try {
  await dropStaleDatabases(adminUrl)
  for (const section of only) {
    const profileDir = args.profile ? path.join(outDir, 'profiles', date, section) : null
    log(`== ${section}`)
    try {
      const r = await SECTIONS[section]({ adminUrl, workDir, profileDir, sizes, rounds: sizes.rounds, quick: args.quick, log })
      result.rows.push(...r.rows)
      result.details[section] = r.details
    } catch (err) {
      console.error(err)
      result.errors.push({ section, message: String(err?.stack ?? err) })
      await stopAll()
    }
    if (profileDir !== null) result.profiles.push(...summarizeProfiles(profileDir).map((p) => ({ section, ...p })))
  }
} finally {
  await stopAll()
  await dropOwnedDatabases(adminUrl).catch((err) => console.error(`could not drop bench databases: ${err.message}`))
  rmSync(workDir, { recursive: true, force: true })
}

result.meta.elapsedS = (performance.now() - started) / 1000
const files = writeResults(outDir, result)
log(`wrote ${path.relative(process.cwd(), files.md)} and .json`)
printTable(result)
const stray = liveChildren()
if (stray.length > 0) console.error(`bench: children still running: ${JSON.stringify(stray)}`)
process.exitCode = result.errors.length > 0 ? 1 : 0

function printTable(r) {
  for (const row of r.rows) {
    const ratio = row.ratio === null ? '' : ` (${row.ratio.toFixed(2)}×${row.goal && row.goal !== 'report' ? `, goal ${row.goal}: ${row.met}` : ''})`
    const v = typeof row.value === 'number' ? Number(row.value.toPrecision(4)) : row.value
    const b = typeof row.baseline === 'number' ? ` vs ${Number(row.baseline.toPrecision(4))}` : ''
    console.log(
      `  ${row.scenario} | ${row.measure}: ${v}${b} ${row.unit}${ratio}${row.ratio === null && row.goal && row.goal !== 'report' ? ` (goal ${row.goal}: ${row.met})` : ''}`,
    )
  }
  for (const e of r.errors) console.log(`  ERROR in ${e.section}: ${e.message.split('\n')[0]}`)
}

function positive(raw, name) {
  const n = Number(raw)
  if (!(n > 0)) fail(`${name} must be a positive number`)
  return n
}

function fail(msg) {
  console.error(`bench: ${msg}`)
  process.exit(2)
}
