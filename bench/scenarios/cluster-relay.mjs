import { forkChild, nextMessage } from '../lib/children.mjs'
import { checkAnswers } from '../lib/check-answers.mjs'
import { remoteAttempts, routableIds } from '../lib/cluster.mjs'
import { SSE_CHUNKS, chatBody } from '../lib/payloads.mjs'
import { runBasics } from '../lib/load.mjs'
import { FOREIGN_LOAD_LIMIT_PCT, quietLoad } from '../lib/quiet-load.mjs'
import { marginRow, reportRow, row } from '../lib/rows.mjs'
import { median } from '../lib/stats.mjs'

const PATH = '/v1/chat/completions'
const provider = new URL('../providers/instant-provider.mjs', import.meta.url).pathname
const PROVIDER_ID = 'bench-instant'

/**
 * Remote vs local relay. One instant provider on node B; the buyer's load on node A (remote: the
 * request and every chunk cross NATS) or on B itself (cluster-local), and the same load on a
 * single-node coordinator with its own instant provider (no NATS at all). The three targets
 * alternate cell by cell, so drift in the box's load hits them alike. CPU of a cluster target
 * is A's plus B's, whichever node the buyer uses: the point is what the cluster spends on a
 * request, wherever it lands. nats-server is sampled separately.
 */
export async function measureRelay(env, { single, nodes, nats, helpers }) {
  const { sizes } = env
  const [a, b, ...rest] = nodes
  const onSingle = forkChild(provider, [single.wsUrl, 'poolcoord', PROVIDER_ID])
  helpers.push(onSingle)
  await nextMessage(onSingle, 'ready', 15_000)
  const onB = forkChild(provider, [b.wsUrl, 'poolcoord', PROVIDER_ID])
  helpers.push(onB)
  await nextMessage(onB, 'ready', 15_000)
  await visibleOn(a, b.nodeId)

  // One pid list for every window, so that each also shows what the idle side spent.
  const pids = [single.pid, a.pid, b.pid, nats.pid, ...rest.map((n) => n.pid), onSingle.pid, onB.pid]
  const targets = {
    single: { url: single.url + PATH },
    local: { url: b.url + PATH },
    remote: { url: a.url + PATH },
  }
  for (const t of Object.values(targets)) await checkAnswers(t.url)

  const runs = []
  const names = Object.keys(targets)
  for (let round = 0; round < env.rounds; round++) {
    for (const [ci, cell] of sizes.clusterCells.entries()) {
      for (let k = 0; k < names.length; k++) {
        // Rotate which target goes first from round to round and cell to cell.
        const name = names[(k + round + ci) % names.length]
        env.log(`cluster: ${name} stream=${cell.stream} c=${cell.c} round ${round + 1}`)
        const before = await traffic(a, nats)
        const r = await quietLoad(env, {
          label: 'cluster',
          url: targets[name].url,
          pids,
          body: chatBody(cell.stream),
          connections: cell.c,
          warmupS: sizes.clusterWarmupS,
          durationS: sizes.clusterDurationS,
        })
        runs.push({ ...slim({ target: name, ...cell, round, ...r }, rest.length), nats: perAttempt(before, await traffic(a, nats)) })
      }
    }
  }
  return { rows: rowsFor(runs, sizes.clusterCells), details: { runs } }
}

/** NATS's counters and node A's remote attempts, read around a whole pass (warm-up included, so per attempt, not per measured request). */
async function traffic(a, nats) {
  const [counters, attempts] = await Promise.all([nats.counters(), remoteAttempts(a)])
  const origin = Object.entries(attempts).filter(([k]) => k.startsWith('origin:'))
  return { ...counters, remote: origin.reduce((x, [, v]) => x + v, 0), refused: attempts['origin:refused'] ?? 0 }
}

function perAttempt(before, after) {
  const d = (k) => after[k] - before[k]
  const n = d('remote')
  const per = (k) => (n === 0 ? null : d(k) / n)
  return {
    remoteAttempts: n,
    refused: d('refused'),
    // A remote attempt is published once and delivered once: in and out count each message once.
    msgsPerAttempt: per('inMsgs'),
    bytesPerAttempt: per('inBytes'),
    subInsertsPerAttempt: per('subInserts'),
    subRemovesPerAttempt: per('subRemoves'),
    // Whatever else crossed NATS in the pass (liveness, snapshots, lease polls) is in these too.
    inMsgs: d('inMsgs'),
  }
}

/** B's provider must be routable in A's view (through B's pool snapshot and its lease) before A can relay to it. */
async function visibleOn(node, owner, timeoutMs = 15_000) {
  const deadline = performance.now() + timeoutMs
  while (performance.now() < deadline) {
    const { ids, poolz } = await routableIds(node, { match: /^bench-instant$/ })
    if (ids.size === 1 && poolz.pool.some((r) => r.provider_id === PROVIDER_ID && r.node_id === owner)) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`cluster: ${PROVIDER_ID} on ${owner} not routable in ${node.nodeId}'s /poolz within ${timeoutMs} ms`)
}

function slim(r, others) {
  const [single, a, b, nats, ...more] = r.cpuMs
  const idle = more.slice(0, others).reduce((s, v) => s + v, 0)
  const cluster = a + b
  const perReq = (ms) => (ms * 1000) / r.ok
  return {
    ...runBasics(r),
    // What the target itself spent: the single node, or nodes A and B together.
    cpuUsPerReq: perReq(r.target === 'single' ? single : cluster),
    natsCpuUsPerReq: perReq(nats),
    nodeACpuUsPerReq: perReq(a),
    nodeBCpuUsPerReq: perReq(b),
    // The rest of the cluster while another target is loaded: its background (liveness, snapshots, polls).
    idleSideCpuPct: (100 * (r.target === 'single' ? cluster + nats + idle : single + idle)) / r.wallMs,
  }
}

function rowsFor(runs, cells) {
  const pick = (target, cell, f) => median(runs.filter((r) => r.target === target && r.stream === cell.stream && r.c === cell.c).map(f))
  const noteFor = (cell) => {
    const other = Math.max(...runs.filter((r) => r.stream === cell.stream && r.c === cell.c).map((r) => r.otherCpuPct))
    return other > FOREIGN_LOAD_LIMIT_PCT ? `foreign load up to ${other.toFixed(0)}% of a core in a window: suspect` : ''
  }
  const rows = []
  for (const cell of cells) {
    const per = cell.stream ? SSE_CHUNKS : 1
    const what = cell.stream ? 'chunk' : 'request'
    const scenario = `cluster relay, ${cell.stream ? `streaming chat (${SSE_CHUNKS} chunks)` : 'non-streaming chat'}, c${cell.c}`
    const cpu = (r) => r.cpuUsPerReq / per
    const remoteCpu = pick('remote', cell, cpu)
    const note = noteFor(cell)
    rows.push(
      row({
        scenario,
        measure: `CPU per ${what}, nodes A+B, remote vs single node`,
        unit: 'µs',
        value: remoteCpu,
        baseline: pick('single', cell, cpu),
        better: 'lower',
        // The issue's goal is per chunk; a non-streamed answer is one chunk and is reported alone.
        goal: cell.stream ? { op: '<=', x: 2 } : null,
        note,
      }),
    )
    rows.push(
      reportRow({
        scenario,
        measure: `CPU per ${what}, nodes A+B, remote vs cluster-local`,
        unit: 'µs',
        value: remoteCpu,
        baseline: pick('local', cell, cpu),
        note: 'cluster-local: buyer and provider both on node B; the ratio is the cost of the NATS hop alone',
      }),
    )
    rows.push(
      reportRow({
        scenario,
        measure: `CPU per ${what}, nats-server, remote vs cluster-local`,
        unit: 'µs',
        value: pick('remote', cell, (r) => r.natsCpuUsPerReq / per),
        baseline: pick('local', cell, (r) => r.natsCpuUsPerReq / per),
        note: 'not in the A+B figures',
      }),
    )
    if (cell.c === 1) {
      const p50 = (r) => r.p50Ms
      rows.push(
        marginRow({
          scenario,
          measure: 'p50, remote vs single node',
          unit: 'ms',
          value: pick('remote', cell, p50),
          baseline: pick('single', cell, p50),
          margin: 1,
          note,
        }),
      )
      rows.push(
        reportRow({ scenario, measure: 'p50, remote vs cluster-local', unit: 'ms', value: pick('remote', cell, p50), baseline: pick('local', cell, p50) }),
      )
    }
    const remoteNats = (f) => pick('remote', cell, (r) => f(r.nats))
    rows.push(
      reportRow({
        scenario,
        measure: 'NATS messages per remote request',
        unit: 'msgs',
        value: remoteNats((x) => x.msgsPerAttempt),
        note: `${Math.round(remoteNats((x) => x.bytesPerAttempt))} B; subscriptions added ${remoteNats((x) => x.subInsertsPerAttempt)?.toFixed(2)} and removed ${remoteNats((x) => x.subRemovesPerAttempt)?.toFixed(2)} per request; background traffic included`,
      }),
    )
    rows.push(
      reportRow({
        scenario,
        measure: 'req/s, remote vs single node',
        unit: 'req/s',
        value: pick('remote', cell, (r) => r.reqPerS),
        baseline: pick('single', cell, (r) => r.reqPerS),
      }),
    )
  }
  return rows
}
