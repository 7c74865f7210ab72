import { forkChild, nextMessage, stopChild } from '../lib/children.mjs'
import { freePort, startCoordinator } from '../lib/coordinator.mjs'
import { createDatabase, dropDatabase, seedTokens } from '../lib/database.mjs'
import { closeAll, connectAll, startFleet, stopFleet } from '../lib/fleet.mjs'
import { checkAnswers } from '../lib/check-answers.mjs'
import { SSE_CHUNKS, chatBody } from '../lib/payloads.mjs'
import { runBasics } from '../lib/load.mjs'
import { FOREIGN_LOAD_LIMIT_PCT, quietLoad } from '../lib/quiet-load.mjs'
import { row, reportRow } from '../lib/rows.mjs'
import { median } from '../lib/stats.mjs'

const PATH = '/v1/chat/completions'
const CELLS = [
  { stream: false, c: 1 },
  { stream: false, c: 16 },
  { stream: false, c: 64 },
  { stream: true, c: 16 },
  { stream: true, c: 64 },
]

/**
 * Chat relay: the coordinator with one instant provider against the ideal relay with one
 * instant responder, same autocannon settings, interleaved cell by cell. Then the same
 * non-streaming c16 load with a pool of 1,000 more eligible providers connected.
 */
export async function runHttp(env) {
  const { adminUrl, workDir, profileDir, sizes } = env
  const db = await createDatabase(adminUrl)
  let coord = null
  const helpers = []
  try {
    coord = await startCoordinator({ dbUrl: db.url, port: await freePort(), workDir, profileDir, label: 'coordinator-http' })
    const provider = forkChild(new URL('../providers/instant-provider.mjs', import.meta.url).pathname, [coord.wsUrl, 'poolcoord'])
    helpers.push(provider)
    await nextMessage(provider, 'ready', 15_000)

    const relayPort = await freePort()
    const relayProfile = profileDir === null ? null : { dir: profileDir, name: 'baseline-ideal-relay' }
    const relay = forkChild(new URL('../baselines/ideal-relay.mjs', import.meta.url).pathname, [String(relayPort)], {}, relayProfile)
    helpers.push(relay)
    await nextMessage(relay, 'ready', 15_000)
    const responder = forkChild(new URL('../providers/instant-provider.mjs', import.meta.url).pathname, [`ws://127.0.0.1:${relayPort}/`, 'relay'])
    helpers.push(responder)
    await nextMessage(responder, 'ready', 15_000)

    const targets = {
      poolcoord: { url: coord.url + PATH, pids: [coord.pid, provider.pid] },
      ideal: { url: `http://127.0.0.1:${relayPort}${PATH}`, pids: [relay.pid, responder.pid] },
    }
    for (const t of Object.values(targets)) await checkAnswers(t.url)

    const runs = []
    for (let round = 0; round < env.rounds; round++) {
      for (const cell of CELLS) {
        // Alternate which target goes first, so that drift in the box's load hits both alike.
        const order = round % 2 === 0 ? ['ideal', 'poolcoord'] : ['poolcoord', 'ideal']
        for (const name of order) {
          env.log(`http: ${name} stream=${cell.stream} c=${cell.c} round ${round + 1}`)
          const r = await quietLoad(env, {
            label: 'http',
            ...targets[name],
            body: chatBody(cell.stream),
            connections: cell.c,
            warmupS: sizes.warmupS,
            durationS: sizes.durationS,
          })
          runs.push({ target: name, ...cell, round, ...r })
        }
      }
    }

    // A large pool: 1,000 more eligible providers for the same model, answering from one fleet
    // process. They have fewer free slots than the instant provider, but selection weighs a
    // random sample of 64 (specs/buyer-api.md §3), so most requests now go to the fleet: this
    // measures a request in a large pool (selection plus traffic spread over 1,001 sockets), not
    // the scan alone, which the routing section measures.
    const fleet = startFleet(1)
    helpers.push(...fleet)
    await seedTokens(db.url, 0, sizes.routingPool)
    const joined = await connectAll(fleet, {
      url: coord.wsUrl,
      protocol: 'poolcoord',
      count: sizes.routingPool,
      auth: 'seeded',
      inflight: 32,
      maxConcurrency: 8,
      answer: true,
    })
    const health = await coord.health()
    env.log(`http: ${joined.ok} pool providers joined; routable ${health.pool.routable}`)
    const pooled = []
    for (let round = 0; round < env.rounds; round++) {
      const r = await quietLoad(env, {
        label: 'http',
        ...targets.poolcoord,
        body: chatBody(false),
        connections: 16,
        warmupS: sizes.warmupS,
        durationS: sizes.durationS,
      })
      pooled.push({ target: 'poolcoord+pool', stream: false, c: 16, round, ...r })
    }
    await closeAll(fleet)

    // The floor of that cost: the ideal relay with the same 1,000 more responders, each request
    // sent to one at random. What both pay is the transport's (one socket wake-up and read per
    // answer instead of several answers per read, and cold caches); what only poolcoord pays is its own.
    const relayJoined = await connectAll(fleet, {
      url: `ws://127.0.0.1:${relayPort}/`,
      protocol: 'raw',
      count: sizes.routingPool,
      inflight: 32,
      answer: true,
    })
    env.log(`http: ${relayJoined.ok} responders joined the ideal relay`)
    for (let round = 0; round < env.rounds; round++) {
      const r = await quietLoad(env, {
        label: 'http',
        ...targets.ideal,
        body: chatBody(false),
        connections: 16,
        warmupS: sizes.warmupS,
        durationS: sizes.durationS,
      })
      pooled.push({ target: 'ideal+pool', stream: false, c: 16, round, ...r })
    }
    await closeAll(fleet)
    await stopFleet(fleet)
    return {
      rows: rowsFor(runs, pooled, sizes, health.pool.routable),
      details: { runs: [...runs, ...pooled].map(slim), poolJoined: joined, relayPoolJoined: relayJoined },
    }
  } finally {
    for (const h of helpers) await stopChild(h)
    if (coord !== null) await coord.stop()
    await dropDatabase(adminUrl, db.name)
  }
}

function slim(r) {
  return {
    ...runBasics(r),
    cpuUsPerReq: (r.cpuMs[0] * 1000) / r.ok,
    helperCpuUsPerReq: (r.cpuMs[1] * 1000) / r.ok,
    serverCpuPct: (100 * r.cpuMs[0]) / r.wallMs,
    serverRssMiB: r.rssKb / 1024,
  }
}

function rowsFor(runs, pooled, sizes, routable) {
  const pick = (target, stream, c, f) => median(runs.filter((r) => r.target === target && r.stream === stream && r.c === c).map((r) => f(slim(r))))
  const noisy = (stream, c) => Math.max(...runs.filter((r) => r.stream === stream && r.c === c).map((r) => r.otherPct))
  const both = (stream, c, f) => {
    const other = noisy(stream, c)
    const note = other > FOREIGN_LOAD_LIMIT_PCT ? `foreign load up to ${other.toFixed(0)}% of a core in a window: suspect` : ''
    return { value: pick('poolcoord', stream, c, f), baseline: pick('ideal', stream, c, f), note }
  }
  const reqs = (r) => r.reqPerS
  const cpu = (r) => r.cpuUsPerReq
  const p50 = (r) => r.p50Ms
  const p99 = (r) => r.p99Ms
  const rows = []
  for (const c of [1, 16, 64]) {
    const scenario = `non-streaming chat, c${c}`
    const tput = c === 1 ? null : { op: '>=', x: 0.8 }
    rows.push(row({ scenario, measure: 'req/s', unit: 'req/s', ...both(false, c, reqs), goal: tput }))
    rows.push(row({ scenario, measure: 'p50', unit: 'ms', ...both(false, c, p50), better: 'lower', goal: c === 1 ? { op: '<=', x: 1.3 } : null }))
    rows.push(row({ scenario, measure: 'p99', unit: 'ms', ...both(false, c, p99), better: 'lower' }))
    rows.push(row({ scenario, measure: 'CPU per request', unit: 'µs', ...both(false, c, cpu), better: 'lower', goal: c === 1 ? null : { op: '<=', x: 1.25 } }))
  }
  for (const c of [16, 64]) {
    const scenario = `streaming chat (20 chunks), c${c}`
    rows.push(row({ scenario, measure: 'req/s', unit: 'req/s', ...both(true, c, reqs), goal: { op: '>=', x: 0.8 } }))
    rows.push(row({ scenario, measure: 'chunks/s', unit: 'chunks/s', ...both(true, c, (r) => r.reqPerS * SSE_CHUNKS), goal: { op: '>=', x: 0.8 } }))
    rows.push(
      row({
        scenario,
        measure: 'CPU per chunk',
        unit: 'µs',
        ...both(true, c, (r) => r.cpuUsPerReq / SSE_CHUNKS),
        better: 'lower',
        goal: { op: '<=', x: 1.25 },
      }),
    )
    rows.push(row({ scenario, measure: 'p99', unit: 'ms', ...both(true, c, p99), better: 'lower' }))
  }
  const ofPool = (target, f) => median(pooled.filter((r) => r.target === target).map((r) => f(slim(r))))
  const pooledCpu = ofPool('poolcoord+pool', cpu)
  const pooledReqs = ofPool('poolcoord+pool', reqs)
  const baseCpu = pick('poolcoord', false, 16, cpu)
  const extra = pooledCpu - baseCpu
  const relayPooledCpu = ofPool('ideal+pool', cpu)
  const relayBaseCpu = pick('ideal', false, 16, cpu)
  const relayExtra = relayPooledCpu - relayBaseCpu
  const scenario = `routing, ${routable.toLocaleString('en-US')} eligible providers (end to end, c16)`
  rows.push(
    row({
      scenario,
      measure: 'CPU per request vs 1 provider',
      unit: 'µs',
      value: pooledCpu,
      baseline: baseCpu,
      better: 'lower',
      goal: { op: '<=', x: 1.1 },
      note: `baseline: the same coordinator with 1 provider; in the pool, requests spread over 1,001 provider sockets (selection alone: the routing rows); the ideal relay spread the same way: ${(relayPooledCpu / relayBaseCpu).toFixed(2)}×`,
    }),
  )
  rows.push(reportRow({ scenario, measure: 'req/s vs 1 provider', unit: 'req/s', value: pooledReqs, baseline: pick('poolcoord', false, 16, reqs) }))
  // The goal is qualitative ("must not grow linearly with the pool if that shows up as cost");
  // read here as: the larger pool may add at most 10% to the CPU per request.
  rows.push(
    reportRow({
      scenario,
      measure: 'CPU per request added by the pool',
      unit: 'µs',
      value: extra,
      note: `${((100 * extra) / baseCpu).toFixed(0)}% of the 1-provider CPU per request; selection itself is flat (routing rows)`,
    }),
  )
  rows.push(
    reportRow({
      scenario: `ideal relay, ${routable.toLocaleString('en-US')} responders (end to end, c16)`,
      measure: 'CPU per request vs 1 responder',
      unit: 'µs',
      value: relayPooledCpu,
      baseline: relayBaseCpu,
      note: `the floor of the pool's cost: ${relayExtra.toFixed(1)} µs added per request (${((100 * relayExtra) / relayBaseCpu).toFixed(0)}%), each request to a random responder of 1,001; poolcoord added ${extra.toFixed(1)} µs`,
    }),
  )
  return rows
}
