import { mkdtempSync, rmSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { forkChild, nextMessage, spawnChild, stopChild } from '../lib/children.mjs'
import { freePort, OPERATOR_KEY } from '../lib/coordinator.mjs'
import { peakRssKb, rssKb } from '../lib/proc-stat.mjs'
import { reportRow } from '../lib/rows.mjs'
import { median, sleep } from '../lib/stats.mjs'

const root = fileURLToPath(new URL('../../', import.meta.url))
const BASELINE = path.join(root, 'bench/baselines/pglite-default.mjs')

/**
 * The embedded default (no DATABASE_URL): the coordinator's first start on an empty data
 * directory and a restart on the same one, against PGlite with its defaults doing the same in a
 * process of its own (pglite-default.mjs). Each start is timed to ready (the coordinator's
 * /healthz answering; the baseline's first query answered), with the process's peak RSS and its
 * RSS after an idle while.
 */
export async function runEmbedded(env) {
  const { workDir } = env
  const idleMs = env.quick ? 500 : 10_000
  const runs = []
  for (let round = 0; round < env.rounds; round++) {
    for (const target of round % 2 === 0 ? ['baseline', 'coordinator'] : ['coordinator', 'baseline']) {
      const dir = mkdtempSync(path.join(workDir, `embedded-${target}-`))
      try {
        for (const start of ['first', 'restart']) {
          env.log(`embedded: ${target} ${start} start, round ${round + 1}`)
          const r = target === 'coordinator' ? await coordinatorStart(dir, idleMs) : await baselineStart(dir, idleMs)
          runs.push({ target, start, round, ...r })
        }
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }
  }
  return { rows: rowsFor(runs), details: { idleMs, runs } }
}

async function coordinatorStart(dir, idleMs) {
  const port = await freePort()
  const started = performance.now()
  const child = spawnChild(
    process.execPath,
    ['--import', path.join(root, 'bench/lib/die-with-parent.mjs'), path.join(root, 'packages/coordinator/dist/bin.js')],
    {
      cwd: dir,
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        COORD_HOST: '127.0.0.1',
        COORD_PORT: String(port),
        COORD_DATA_DIR: path.join(dir, 'data'),
        COORD_OPERATOR_KEY: OPERATOR_KEY,
        COORD_LOG_LEVEL: 'warn',
      },
    },
  )
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`the coordinator exited at start (${child.exitCode})`)
      try {
        if ((await fetch(`http://127.0.0.1:${port}/healthz`)).ok) break
      } catch {
        // not listening yet
      }
      await sleep(10)
    }
    return await measure(child.pid, started, idleMs)
  } finally {
    await stopChild(child)
  }
}

async function baselineStart(dir, idleMs) {
  const started = performance.now()
  const child = forkChild(BASELINE, [path.join(dir, 'pglite')])
  try {
    await nextMessage(child, 'ready', 120_000)
    return await measure(child.pid, started, idleMs)
  } finally {
    await stopChild(child)
  }
}

async function measure(pid, started, idleMs) {
  const readyMs = performance.now() - started
  await sleep(idleMs)
  return { readyMs, peakMiB: peakRssKb(pid) / 1024, idleMiB: rssKb(pid) / 1024 }
}

function rowsFor(runs) {
  const rows = []
  const pick = (target, start, key) => median(runs.filter((r) => r.target === target && r.start === start).map((r) => r[key]))
  for (const start of ['first', 'restart']) {
    const scenario = start === 'first' ? 'embedded first start (empty data directory)' : 'embedded restart (existing data directory)'
    const note = start === 'first' ? 'baseline: PGlite defaults, initdb in the process' : 'baseline: PGlite defaults'
    for (const [key, measure, unit] of [
      ['readyMs', 'time to ready, coordinator vs PGlite alone', 'ms'],
      ['peakMiB', 'peak RSS, coordinator vs PGlite alone', 'MiB'],
      ['idleMiB', 'RSS when idle, coordinator vs PGlite alone', 'MiB'],
    ]) {
      rows.push(reportRow({ scenario, measure, unit, value: pick('coordinator', start, key), baseline: pick('baseline', start, key), note }))
    }
  }
  return rows
}
