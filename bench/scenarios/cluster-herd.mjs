import { routableIds, waitForMembership } from '../lib/cluster.mjs'
import { seedTokens } from '../lib/database.mjs'
import { broadcast, connectAll, mergeHerdStats, startFleet, stopFleet } from '../lib/fleet.mjs'
import { cpuWindow } from '../lib/proc-stat.mjs'
import { absoluteRow, reportRow } from '../lib/rows.mjs'
import { sleep } from '../lib/stats.mjs'

/** Seeded providers are bench-<i> (lib/tokens.mjs); the relay's instant provider is not one of them. */
const SEEDED = /^bench-\d+$/

/**
 * Node failure: N providers with operator-issued tokens spread evenly over the nodes, the last
 * node SIGKILLed. Its providers see their sockets die and reconnect with their bearer tokens,
 * with capped exponential backoff and full jitter, to the surviving nodes: the fleet stands in
 * for a load balancer that has already taken the dead node out. A bearer reconnect is admitted at
 * once but becomes routable only when the dead node's liveness key has expired (≤ TTL after its
 * last renewal), so the TTL is the floor. Measured: seconds from the kill until a survivor's
 * /poolz shows every provider routable on a live node, and every refusal on the way (a 4005 is
 * wrongful: every token is valid).
 */
export async function measureClusterHerd(env, { nodes, nats, dbUrl, ttlMs }) {
  const { sizes } = env
  const n = sizes.clusterHerd
  const backoff = { baseMs: sizes.herdBaseMs, capMs: sizes.herdCapMs }
  const victim = nodes[nodes.length - 1]
  const survivors = nodes.slice(0, -1)
  const fleet = startFleet(Math.max(2, Math.ceil(n / 2500)))
  try {
    await seedTokens(dbUrl, 0, n)
    const pids = [...nodes.map((x) => x.pid), nats.pid]
    const idle = sizes.clusterHoldS > 0 ? await hold(pids, sizes.clusterHoldS) : null
    const per = Math.ceil(n / nodes.length)
    const joins = []
    const fillStart = performance.now()
    for (const [k, node] of nodes.entries()) {
      const count = Math.max(0, Math.min(per, n - k * per))
      // One node at a time: a fleet process answers one connect command at a time.
      const j = await connectAll(fleet, { url: node.wsUrl, protocol: 'poolcoord', auth: 'seeded', from: k * per, count, inflight: 64, pids: [node.pid] })
      if (j.ok !== count) throw new Error(`cluster herd: only ${j.ok} of ${count} providers joined ${node.nodeId}: ${JSON.stringify(j.outcomes)}`)
      joins.push({ node: node.nodeId, ok: j.ok, perS: j.perS, p99Ms: j.latency.p99Ms, cpuUsPerAdmission: (j.cpuMs[0] * 1000) / j.ok })
    }
    const joinedAt = performance.now()
    const fillS = (joinedAt - fillStart) / 1000
    // Each node lists the others' providers from their pool snapshots: wait until all agree.
    const visible = await allVisible(nodes, n, null, 60_000)
    const visibleAfterMs = performance.now() - joinedAt
    // One KV entry per node, each its whole pool: what every snapshot republish costs.
    const snapshots = await nats.stream('KV_pc_pool')
    env.log(`cluster: ${n} providers on ${nodes.length} nodes, all routable everywhere ${(visibleAfterMs / 1000).toFixed(2)} s after the last admission`)
    let held = null
    if (sizes.clusterHoldS > 0) {
      // What holding the pool costs each node while nothing is requested: heartbeats, and the
      // pool snapshots every node republishes whenever one of its sessions changed.
      await broadcast(fleet, { cmd: 'heartbeats', intervalMs: sizes.heartbeatMs })
      await sleep(1000)
      const sent0 = (await broadcast(fleet, { cmd: 'count' })).reduce((x, r) => x + r.heartbeatsSent, 0)
      held = await hold(pids, sizes.clusterHoldS)
      held.heartbeats = (await broadcast(fleet, { cmd: 'count' })).reduce((x, r) => x + r.heartbeatsSent, 0) - sent0
      await broadcast(fleet, { cmd: 'heartbeats', intervalMs: 0 })
    }
    env.log(`cluster: SIGKILL ${victim.nodeId}`)

    await broadcast(fleet, { cmd: 'herd', ...backoff, urls: survivors.map((s) => s.wsUrl), deadlineMs: sizes.clusterHerdTimeoutS * 1000 + 30_000 })
    const natsBefore = await nats.counters()
    const window = cpuWindow([...survivors.map((x) => x.pid), nats.pid])
    const killedAt = performance.now()
    const killedEpoch = Date.now()
    victim.child.kill('SIGKILL')
    await new Promise((resolve) => (victim.child.exitCode !== null || victim.child.signalCode !== null ? resolve() : victim.child.once('exit', resolve)))

    const watcher = survivors[0]
    const deadline = killedAt + sizes.clusterHerdTimeoutS * 1000
    let leftViewAt = null
    let allRoutableAt = null
    let routable = 0
    while (performance.now() < deadline) {
      const h = await watcher.health()
      if (leftViewAt === null && h.cluster?.live_nodes === survivors.length) leftViewAt = performance.now() - killedAt
      // /healthz is cheap but counts a dead node's rows until its key expires; /poolz (5,000 rows) only when it could be done.
      if (leftViewAt !== null && h.pool.routable >= n) {
        routable = (await routableIds(watcher, { match: SEEDED, except: victim.nodeId })).ids.size
        if (routable >= n) {
          allRoutableAt = performance.now() - killedAt
          break
        }
      }
      await sleep(100)
    }
    const failover = failoverCost(window.stop(), natsBefore, await nats.counters())
    // The other survivor's view, and late stragglers' refusals, before the counts are read.
    const agreed =
      allRoutableAt === null
        ? null
        : await allVisible(survivors, n, victim.nodeId, 10_000).then(
            () => (performance.now() - killedAt) / 1000,
            () => null,
          )
    await sleep(500)
    await waitForMembership(survivors, survivors.length, 5000).catch(() => undefined)
    const stats = mergeHerdStats(await broadcast(fleet, { cmd: 'herd-stats' }))
    const final = await routableIds(watcher, { match: SEEDED, except: victim.nodeId })
    const bearer = final.poolz.pool.filter((r) => SEEDED.test(r.provider_id) && r.node_id !== victim.nodeId && r.auth_state === 'bearer_validated').length
    const wrongful = (stats.lost['close:4005'] ?? 0) + (stats.outcomes['close:4005'] ?? 0)
    const lastBackS = stats.lastBackAt === null ? null : (stats.lastBackAt - killedEpoch) / 1000
    const details = {
      n,
      nodes: nodes.map((x) => x.nodeId),
      victim: victim.nodeId,
      ttlMs,
      heartbeatMs: sizes.heartbeatMs,
      backoff,
      joins,
      fillS,
      visibleEverywhereAfterS: visibleAfterMs / 1000,
      visibleBefore: visible,
      idle,
      held,
      snapshots,
      snapshotBytesPerSession: snapshots === null ? null : snapshots.bytes / n,
      failover,
      deadNodeLeftViewAtS: leftViewAt === null ? null : leftViewAt / 1000,
      allRoutableAtS: allRoutableAt === null ? null : allRoutableAt / 1000,
      bothSurvivorsAgreeAtS: agreed,
      lastReconnectAtS: lastBackS,
      routable: final.ids.size,
      bearerValidated: bearer,
      wrongful4005: wrongful,
      ...stats,
    }
    return { rows: rowsFor(details), details }
  } finally {
    await stopFleet(fleet)
  }
}

/** Until every node's /poolz shows all n seeded providers routable (on a node other than `except`). */
async function allVisible(nodes, n, except, timeoutMs) {
  const deadline = performance.now() + timeoutMs
  for (;;) {
    const counts = await Promise.all(nodes.map(async (node) => (await routableIds(node, { match: SEEDED, except })).ids.size))
    if (counts.every((c) => c >= n)) return Object.fromEntries(nodes.map((node, i) => [node.nodeId, counts[i]]))
    if (performance.now() > deadline) throw new Error(`cluster herd: routable counts ${counts.join('/')} of ${n} after ${timeoutMs} ms`)
    await sleep(100)
  }
}

/** From the kill until all were routable: the survivors' and NATS's work while the moved sessions wait for the dead node's key to expire. */
function failoverCost(cpu, before, after) {
  const s = cpu.wallMs / 1000
  return {
    seconds: s,
    survivorsCpuPct: cpu.cpuMs.slice(0, -1).map((ms) => (100 * ms) / cpu.wallMs),
    natsCpuPct: (100 * cpu.cpuMs[cpu.cpuMs.length - 1]) / cpu.wallMs,
    natsMsgsPerS: (after.inMsgs - before.inMsgs) / s,
    natsInBytesPerS: (after.inBytes - before.inBytes) / s,
  }
}

/** CPU of each node and of nats-server (last) over a quiet window, in % of one core. */
async function hold(pids, seconds) {
  const w = cpuWindow(pids)
  await sleep(seconds * 1000)
  const r = w.stop()
  const pct = r.cpuMs.map((ms) => (100 * ms) / r.wallMs)
  return { seconds: r.wallMs / 1000, nodesPct: pct.slice(0, -1), natsPct: pct[pct.length - 1], otherCpuPct: r.otherPct }
}

function rowsFor(d) {
  const scenario = `cluster node failure, ${d.n.toLocaleString('en-US')} providers on ${d.nodes.length} nodes, ${d.victim} SIGKILLed`
  const moved = d.back
  const s = (v) => (v === null ? '—' : `${v.toFixed(2)} s`)
  return [
    absoluteRow({
      scenario,
      measure: 'providers routable again on the survivors',
      unit: 'providers',
      value: d.routable,
      goal: `all ${d.n}`,
      met: d.routable === d.n && d.bearerValidated === d.n,
      note: `${d.bearerValidated} bearer_validated on a survivor in ${d.nodes[0]}'s /poolz; ${moved} reconnected`,
    }),
    absoluteRow({
      scenario,
      measure: 'wrongful rejections (4005)',
      unit: 'closes',
      value: d.wrongful4005,
      goal: '0',
      met: d.wrongful4005 === 0,
    }),
    reportRow({
      scenario,
      measure: 'seconds from SIGKILL to all routable vs node TTL',
      unit: 's',
      value: d.allRoutableAtS,
      baseline: d.ttlMs / 1000,
      note:
        `baseline: COORD_NODE_TTL_MS, the design's floor (the key expires ≤ TTL after the last renewal, renewed every 20% of it); ` +
        `dead node left ${d.nodes[0]}'s view at ${s(d.deadNodeLeftViewAtS)}, last provider reconnected at ${s(d.lastReconnectAtS)}, both survivors agree at ${s(d.bothSurvivorsAgreeAtS)}; ` +
        `backoff ${d.backoff.baseMs} ms doubling to ${d.backoff.capMs} ms, full jitter`,
    }),
    reportRow({
      scenario,
      measure: 'NATS messages/s from SIGKILL to all routable',
      unit: 'msgs/s',
      value: d.failover.natsMsgsPerS,
      note: `nats-server at ${d.failover.natsCpuPct.toFixed(0)}% of a core, survivors at ${d.failover.survivorsCpuPct.map((p) => p.toFixed(0) + '%').join(' and ')}: lease polls of the sessions waiting for the handover, snapshots`,
    }),
    reportRow({
      scenario,
      measure: 'reconnect attempts per moved provider',
      unit: 'attempts',
      value: moved === 0 ? null : d.attempts / moved,
      note: `refusals on the way: ${JSON.stringify(d.outcomes)}; closes seen: ${JSON.stringify(d.lost)}`,
    }),
    reportRow({
      scenario,
      measure: 'bearer admissions/s while filling the cluster',
      unit: '/s',
      value: d.n / d.fillS,
      note: `per node: ${d.joins.map((j) => `${j.node} ${Math.round(j.perS)}/s, p99 ${j.p99Ms?.toFixed(0)} ms, ${Math.round(j.cpuUsPerAdmission)} µs CPU`).join('; ')}`,
    }),
    ...holdRows(d, scenario),
    reportRow({
      scenario,
      measure: 'seconds from the last admission until every node sees all',
      unit: 's',
      value: d.visibleEverywhereAfterS,
      note: `through each node’s pool snapshot in NATS KV (republished every 250 ms when changed)${d.snapshotBytesPerSession === null ? '' : `; ${Math.round(d.snapshotBytesPerSession)} B per session in a snapshot`}`,
    }),
  ]
}

function holdRows(d, scenario) {
  if (d.held === null || d.idle === null) return []
  const sum = (w) => w.nodesPct.reduce((a, b) => a + b, 0)
  const per = (w) => w.nodesPct.map((p, i) => `${d.nodes[i]} ${p.toFixed(1)}%`).join(', ')
  return [
    reportRow({
      scenario,
      measure: `CPU of all nodes holding the pool (heartbeat every ${d.heartbeatMs / 1000} s) vs holding none`,
      unit: '% of a core',
      value: sum(d.held),
      baseline: sum(d.idle),
      note: `${per(d.held)} vs ${per(d.idle)}; nats-server ${d.held.natsPct.toFixed(1)}% vs ${d.idle.natsPct.toFixed(1)}%; ${Math.round(((sum(d.held) - sum(d.idle)) * d.held.seconds * 1e4) / Math.max(1, d.held.heartbeats))} µs of node CPU above idle per heartbeat (${d.held.heartbeats} heartbeats)`,
    }),
  ]
}
