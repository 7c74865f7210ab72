// The selection function in isolation: selectProvider over the real Registry's session list
// (as the exchange calls it) and over a plain array, at several pool sizes.
// argv[2]: JSON {sizes, budgetMs}
import { Registry } from '../../packages/coordinator/dist/pool/registry.js'
import { selectProvider } from '../../packages/coordinator/dist/routing/select-provider.js'

const { sizes, budgetMs } = JSON.parse(process.argv[2])
process.on('disconnect', () => process.exit(0))

function session(i) {
  return {
    providerId: `p-${i}`,
    assignedId: `a-${i}`,
    authState: 'bearer_validated',
    tokenPrefix: null,
    hostname: `p-${i}.bench`,
    binaryVersion: 'bench-1',
    modelId: 'bench-model',
    models: ['bench-model', `extra-${i % 7}`],
    maxConcurrency: 8,
    maxContextTokens: 8192,
    throughputTps: null,
    status: 'ready',
    // A few distinct slot counts, so that both the ranking and the random tie-break run.
    slotsFree: 1 + (i % 4),
    slotsTotal: 8,
    inFlight: 0,
    consecutiveFailures: 0,
    cooldownUntil: 0,
    drainRequested: false,
    connectedAt: 0,
    lastHeartbeatAt: null,
    lastInboundAt: 0,
  }
}

function time(fn) {
  const req = { model: 'bench-model', pin: null, exclude: new Set() }
  let sink = 0
  // Warm-up, so that the JIT has optimised the loop before it is timed.
  for (let i = 0; i < 200; i++) sink += fn(req) ? 1 : 0
  let n = 0
  const start = performance.now()
  let elapsed = 0
  while (elapsed < budgetMs) {
    for (let i = 0; i < 50; i++) sink += fn(req) ? 1 : 0
    n += 50
    elapsed = performance.now() - start
  }
  if (sink < 0) console.log(sink)
  return (elapsed * 1000) / n
}

const rows = []
for (const size of sizes) {
  const registry = new Registry()
  const list = []
  for (let i = 0; i < size; i++) {
    const s = session(i)
    registry.register(s, null)
    list.push(s)
  }
  const now = Date.now()
  const viaRegistry = time((req) => selectProvider(registry.sessionList(), req, Math.random, now).ok)
  const viaArray = time((req) => selectProvider(list, req, Math.random, now).ok)
  rows.push({ size, usPerSelection: viaRegistry, usPerSelectionArray: viaArray })
}
process.send({ type: 'result', rows })
process.disconnect()
