import t from 'tap'
import { CHUNK_BYTES, encodeSnapshot, parseChunk, parseManifest } from '../../src/cluster/pool-snapshot.js'
import type { ProviderSession } from '../../src/pool/provider-session.js'
import { makeSession } from '../helpers/fixtures.js'

const assemble = (manifest: string, chunks: string[]): ProviderSession[] | null => {
  const m = parseManifest(manifest)
  if (m === null) return null
  const out: ProviderSession[] = []
  for (let i = 0; i < m.chunks; i++) {
    const c = parseChunk(chunks[i] as string)
    if (c === null || c.seq !== m.seq || c.i !== i) return null
    out.push(...c.sessions)
  }
  return out
}

t.test('a snapshot round-trips, every field of every session', async (t) => {
  const sessions = [
    makeSession({
      providerId: 'a',
      assignedId: 'as-a',
      models: ['m1', 'm2'],
      modelId: 'm1',
      tokenPrefix: '0123456789ab',
      lastHeartbeatAt: 5,
      throughputTps: 12.5,
      consecutiveFailures: 2,
      cooldownUntil: 5_000,
      lastFailure: 'first_chunk_timeout',
      failingSince: 3_000,
    }),
    makeSession({
      providerId: 'b..c',
      assignedId: 'as-b',
      authState: 'bearerless_duplicate',
      tokenPrefix: null,
      cordoned: true,
      drainRequested: true,
      leasePending: true,
    }),
    makeSession({ providerId: 'keyed', assignedId: 'as-k', authState: 'key_proven', identity: { generation: 3, keyFingerprint: 'abcdef012345' } }),
  ]
  const snap = encodeSnapshot('n1', 'inc-1', 7, sessions)
  t.equal(snap.chunks.length, 1)
  const back = assemble(snap.manifest, snap.chunks)
  t.same(
    back,
    sessions.map((s) => ({ ...s, lastFailure: s.lastFailure ?? null, failingSince: s.failingSince ?? 0, nodeId: 'n1', leasePending: s.leasePending === true })),
    'the other node sees the same facts, with the owner as nodeId',
  )
})

t.test('the failure run: absent from an older node reads as none; an unknown reason reads as null and keeps the row', async (t) => {
  const failing = makeSession({ providerId: 'a', assignedId: 'as-a', consecutiveFailures: 1, cooldownUntil: 9, lastFailure: 'disconnect', failingSince: 8 })
  const chunk = encodeSnapshot('n1', 'inc-1', 1, [failing]).chunks[0] as string
  t.match(parseChunk(chunk)?.sessions[0], { lastFailure: 'disconnect', failingSince: 8 })
  t.match(parseChunk(chunk.replace(',"lf":"disconnect","fs":8', ''))?.sessions[0], { lastFailure: null, failingSince: 0 })
  // A newer node may know a reason this one does not (a rolling upgrade): only the label is lost.
  t.match(parseChunk(chunk.replace('"lf":"disconnect"', '"lf":"made_up"'))?.sessions[0], {
    providerId: 'a',
    lastFailure: null,
    consecutiveFailures: 1,
    cooldownUntil: 9,
  })
  t.match(parseChunk(chunk.replace('"lf":"disconnect"', '"lf":7'))?.sessions[0], { providerId: 'a', lastFailure: null })
  t.same(parseChunk(chunk.replace('"fs":8', '"fs":-1'))?.sessions, [])
})

t.test('large pools are cut into chunks under CHUNK_BYTES, and only a whole publish assembles', async (t) => {
  const models = Array.from({ length: 64 }, (_, i) => `model-${i}-${'x'.repeat(200)}`)
  const sessions = Array.from({ length: 400 }, (_, i) => makeSession({ providerId: `p${i}`, assignedId: `as-${i}`, models, modelId: models[0] as string }))
  const snap = encodeSnapshot('n2', 'inc', 3, sessions)
  t.ok(snap.chunks.length > 10, `${snap.chunks.length} chunks`)
  for (const c of snap.chunks) t.ok(c.length < CHUNK_BYTES + 20_000, 'each chunk stays near the budget')
  t.equal(assemble(snap.manifest, snap.chunks)?.length, 400)
  const next = encodeSnapshot('n2', 'inc', 4, sessions.slice(1))
  t.equal(assemble(next.manifest, [next.chunks[0] as string, ...snap.chunks.slice(1)]), null, 'a chunk of another publish is never mixed in')
})

t.test('values that are not ours are refused, and bad rows dropped one by one', async (t) => {
  for (const bad of [
    '',
    'null',
    '[]',
    '{"v":2}',
    '{"v":1,"node_id":"N1","incarnation":"x","seq":1,"chunks":1}',
    '{"v":1,"node_id":"n1","incarnation":"x","seq":1,"chunks":0}',
  ]) {
    t.equal(parseManifest(bad), null, `manifest ${bad}`)
  }
  const good = JSON.parse(encodeSnapshot('n1', 'inc', 1, [makeSession({ providerId: 'ok' })]).chunks[0] as string) as { sessions: unknown[] }
  const rows = [
    ...good.sessions,
    { ...(good.sessions[0] as object), p: '..' },
    { ...(good.sessions[0] as object), sf: -1 },
    { ...(good.sessions[0] as object), m: [] },
    { ...(good.sessions[0] as object), p: 'bad-ig', ig: [0, 'abcdef012345'] },
    { ...(good.sessions[0] as object), p: 'bad-ig2', ig: [1, 'ABCDEF012345'] },
    { ...(good.sessions[0] as object), p: 'old-node', ig: undefined },
    'x',
  ]
  const parsed = parseChunk(JSON.stringify({ ...good, sessions: rows }))
  t.same(
    parsed?.sessions.map((s) => s.providerId),
    ['ok', 'old-node'],
    'only the well-formed rows are kept; a row without identity (an older node) reads as not pinned',
  )
})
