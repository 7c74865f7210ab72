import t from 'tap'
import { MIN_NATS_MAX_PAYLOAD } from '../../src/cluster/nats-link.js'
import { routableOn, startCluster, type NodeProc } from '../helpers/cluster-procs.js'
import { startNatsServer } from '../helpers/nats-server.js'
import { join, type ProviderClient } from '../helpers/provider-client.js'
import { TestProvider } from '../helpers/test-provider.js'

/**
 * Review attack: a node's pool snapshot (pool-snapshot.ts) is one KV value holding every session,
 * about 300 bytes a row and up to ~16 KiB for a provider that declares 64 long model names. The
 * snapshot is bounded only by MAX_SNAPSHOT_ROWS (50,000, the session cap), never by NATS
 * max_payload. Past max_payload the put fails, ClusterPool logs it at *debug* and retries every
 * 250 ms: the node's whole pool freezes, for every other node, at the last snapshot that fit.
 * Tokenless providers (the default: require_provider_tokens off) can push it there: a few hundred
 * sockets with fat hellos. Legitimately it happens at ~14k plain sessions on a 4 MiB server.
 *
 * The test runs NATS at the smallest max_payload the coordinator accepts (4 MiB + 64 KiB).
 */
t.test('fat hellos on one node hide its later providers from every other node', async (t) => {
  const nats = await startNatsServer(t, { maxPayload: MIN_NATS_MAX_PAYLOAD })
  // Every fat provider is tokenless and connects from 127.0.0.1: lift the per-address cap on
  // unproven sessions (abuse limits, default 16) so the attack reaches the snapshot bound.
  const cluster = await startCluster(t, 2, { nats, env: { COORD_MAX_UNPROVEN_PER_ADDRESS: '1000' } })
  const [n1, n2] = cluster.nodes as [NodeProc, NodeProc]

  // 60 model names of 250 characters: a hello just under the 16 KiB first-frame limit.
  const models = Array.from({ length: 60 }, (_, i) => `${String(i).padStart(3, '0')}-${'x'.repeat(246)}`)
  const fat: ProviderClient[] = []
  t.teardown(() => Promise.all(fat.map((c) => c.close())))
  const count = Math.ceil(MIN_NATS_MAX_PAYLOAD / 15_000) + 10
  for (let i = 0; i < count; i += 8) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(8, count - i) }, (_, j) => join(n2.wsUrl, `fat-${i + j}`, { hello: { model_id: models[0], supported_models: models } })),
    )
    for (const r of batch) {
      if (r.ack === undefined) throw new Error(`a fat provider was refused: ${r.close.code}`)
      fat.push(r.client)
    }
  }

  // An ordinary provider joins node 2 afterwards.
  const late = await TestProvider.join(n2.wsUrl, 'late-comer')
  t.teardown(() => late.close())
  let seen = true
  try {
    await routableOn(n1, 'late-comer', 'n2', 10_000)
  } catch {
    seen = false
  }
  t.ok(seen, 'node 1 sees the provider that joined node 2 after the fat ones')
  const n2row = (await n1.poolz()).cluster?.nodes.find((n) => n.node_id === 'n2')
  t.equal(n2row?.sessions, count + 1, `node 1 knows node 2 holds ${count + 1} sessions (it shows ${n2row?.sessions})`)
})
