import { closeSync, mkdirSync, openSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { spawnChild, stopChild } from '../lib/children.mjs'
import { freePort, logEvents, startCoordinator } from '../lib/coordinator.mjs'
import { createDatabase, dropDatabase } from '../lib/database.mjs'
import { runBasics } from '../lib/load.mjs'
import { MODEL, chatBody } from '../lib/payloads.mjs'
import { FOREIGN_LOAD_LIMIT_PCT, quietLoad } from '../lib/quiet-load.mjs'
import { reportRow, row } from '../lib/rows.mjs'
import { median } from '../lib/stats.mjs'

const root = fileURLToPath(new URL('../../', import.meta.url))
const AGENT = process.env.TMP_OLD_AGENT ?? path.join(root, 'packages/provider-agent/dist/poolcoord-provider.js')
const MOCK = path.join(root, 'packages/provider-agent/dist/mock-backend-cli.js')
const PATH = '/v1/chat/completions'
/** The issue's figures: 16-token answers, streamed or not, 16 in flight. */
const TOKENS = 16
/** Above the load's 16 in flight, so that a slot handed back a moment late never turns into a 503. */
const AGENT_CONCURRENCY = 32

/**
 * The provider side: the coordinator with the real provider agent in front of the mock backend
 * (buyer → coordinator → agent → backend), against the same backend called directly by the same
 * load generator. Every window samples all three processes, so the direct windows show the
 * backend's own cost per request and the path windows what the agent and the coordinator add.
 */
export async function runAgent(env) {
  const { adminUrl, workDir, profileDir, sizes } = env
  const db = await createDatabase(adminUrl)
  let coord = null
  const helpers = []
  try {
    coord = await startCoordinator({ dbUrl: db.url, port: await freePort(), workDir, profileDir, label: 'coordinator-agent' })
    const mockPort = await freePort()
    const mockUrl = `http://127.0.0.1:${mockPort}/v1`
    const mock = startNode({ script: MOCK, args: ['--port', String(mockPort), '--model', MODEL, '--tokens', String(TOKENS)], label: 'mock-backend', env })
    helpers.push(mock)
    await until(async () => (await fetch(`${mockUrl}/models`)).ok, 'the mock backend answers', mock)
    const agentArgs = ['--coordinator', coord.wsUrl, '--backend', mockUrl, '--provider-id', 'bench-agent']
    agentArgs.push('--max-concurrency', String(AGENT_CONCURRENCY), '--state-dir', path.join(workDir, 'agent-state'), '--log-level', 'warn')
    const agent = startNode({ script: AGENT, args: agentArgs, label: 'provider-agent', env })
    helpers.push(agent)
    await until(async () => (await coord.health()).pool.routable >= 1, 'the agent is routable', agent)

    // One pid list for every window: the agent first (its RSS is reported), then the coordinator, then the backend.
    const pids = [agent.pid, coord.pid, mock.pid]
    const targets = { path: coord.url + PATH, direct: mockUrl + '/chat/completions' }
    for (const url of Object.values(targets)) await checkMockAnswers(url)

    const runs = []
    for (let round = 0; round < env.rounds; round++) {
      for (const cell of sizes.agentCells) {
        // Alternate which target goes first, so that drift in the box's load hits both alike.
        const order = round % 2 === 0 ? ['direct', 'path'] : ['path', 'direct']
        for (const name of order) {
          env.log(`agent: ${name} stream=${cell.stream} c=${cell.c} round ${round + 1}`)
          const r = await quietLoad(env, {
            label: 'agent',
            url: targets[name],
            pids,
            body: chatBody(cell.stream),
            connections: cell.c,
            warmupS: sizes.warmupS,
            durationS: sizes.durationS,
          })
          runs.push(slim({ target: name, ...cell, round, ...r }))
        }
      }
    }
    return {
      rows: rowsFor(runs, sizes.agentCells),
      details: { runs, tokens: TOKENS, agentConcurrency: AGENT_CONCURRENCY, coordinatorLog: logEvents(coord.logFile) },
    }
  } finally {
    // The agent first: it drains, then closes its socket; the backend and the coordinator after it.
    for (const h of helpers.reverse()) await stopChild(h)
    if (coord !== null) await coord.stop()
    await dropDatabase(adminUrl, db.name)
  }
}

/**
 * A dist/ script as its own process, measured from outside through its pid, as
 * lib/coordinator.mjs starts the coordinator: logs to a file, stops itself if the runner dies,
 * and with --profile writes a CPU profile when it exits.
 */
function startNode({ script, args, label, env }) {
  mkdirSync(env.workDir, { recursive: true })
  const logFile = path.join(env.workDir, `${label}.log`)
  const logFd = openSync(logFile, 'a')
  const node = ['--import', path.join(root, 'bench/lib/die-with-parent.mjs')]
  if (env.profileDir !== null) {
    mkdirSync(env.profileDir, { recursive: true })
    node.push('--cpu-prof', `--cpu-prof-dir=${env.profileDir}`, `--cpu-prof-name=${label}.cpuprofile`)
  }
  const child = spawnChild(process.execPath, [...node, script, ...args], {
    cwd: env.workDir,
    stdio: ['ignore', logFd, logFd, 'ipc'],
    env: { PATH: process.env.PATH, HOME: process.env.HOME },
  })
  closeSync(logFd)
  child.logFile = logFile
  return child
}

async function until(cond, what, child, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${what}: the process exited (${child.exitCode}):\n${tail(child.logFile)}`)
    try {
      if (await cond()) return
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}:\n${tail(child.logFile)}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

function tail(file) {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-20).join('\n')
  } catch {
    return '(no log)'
  }
}

/** Both targets must give the mock's answer before their speed means anything: TOKENS events, the stop event, [DONE]. */
async function checkMockAnswers(url) {
  const sse = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: chatBody(true) })
  const text = await sse.text()
  const events = text.match(/^data: /gm)?.length ?? 0
  if (sse.status !== 200 || events !== TOKENS + 2 || !text.endsWith('data: [DONE]\n\n')) {
    throw new Error(`${url}: streamed answer has ${events} events (status ${sse.status}), expected ${TOKENS + 2}`)
  }
  const json = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: chatBody(false) })
  const body = await json.json()
  if (json.status !== 200 || body.usage?.completion_tokens !== TOKENS) throw new Error(`${url}: bad JSON answer (status ${json.status})`)
}

function slim(r) {
  const per = (ms) => (ms * 1000) / r.ok
  return {
    ...runBasics(r),
    agentCpuUsPerReq: per(r.cpuMs[0]),
    coordCpuUsPerReq: per(r.cpuMs[1]),
    mockCpuUsPerReq: per(r.cpuMs[2]),
    agentRssMiB: r.rssKb / 1024,
  }
}

function rowsFor(runs, cells) {
  const rows = []
  for (const { stream, c } of cells) {
    const of = (target) => runs.filter((r) => r.target === target && r.stream === stream && r.c === c)
    const pick = (target, f) => median(of(target).map(f))
    const other = Math.max(...runs.filter((r) => r.stream === stream && r.c === c).map((r) => r.otherCpuPct))
    const failed = of('path').reduce((n, r) => n + r.non2xx + r.errors, 0)
    const notes = [other > FOREIGN_LOAD_LIMIT_PCT ? `foreign load up to ${other.toFixed(0)}% of a core in a window: suspect` : '']
    if (failed > 0) notes.push(`${failed} requests failed through the path`)
    const note = notes.filter(Boolean).join('; ')
    const scenario = `provider agent, ${stream ? `streaming (${TOKENS} tokens)` : `non-streaming (${TOKENS} tokens)`}, c${c}`
    const agentCpu = pick('path', (r) => r.agentCpuUsPerReq)
    const coordCpu = pick('path', (r) => r.coordCpuUsPerReq)
    // The goal of issue 16: the agent costs no more CPU per request than the coordinator.
    rows.push(
      row({
        scenario,
        measure: 'agent ÷ coordinator CPU per request',
        unit: 'µs',
        value: agentCpu,
        baseline: coordCpu,
        better: 'lower',
        goal: { op: '<=', x: 1 },
        note,
      }),
    )
    rows.push(reportRow({ scenario, measure: 'agent CPU per request', unit: 'µs', value: agentCpu, note }))
    rows.push(reportRow({ scenario, measure: 'coordinator CPU per request', unit: 'µs', value: coordCpu, note }))
    const mock = (t) => pick(t, (r) => r.mockCpuUsPerReq)
    rows.push(reportRow({ scenario, measure: 'backend CPU per request, path vs direct', unit: 'µs', value: mock('path'), baseline: mock('direct'), note }))
    rows.push(
      reportRow({
        scenario,
        measure: 'req/s, path vs direct',
        unit: 'req/s',
        value: pick('path', (r) => r.reqPerS),
        baseline: pick('direct', (r) => r.reqPerS),
        note,
      }),
    )
    rows.push(
      reportRow({ scenario, measure: 'p50, path vs direct', unit: 'ms', value: pick('path', (r) => r.p50Ms), baseline: pick('direct', (r) => r.p50Ms), note }),
    )
  }
  return rows
}
