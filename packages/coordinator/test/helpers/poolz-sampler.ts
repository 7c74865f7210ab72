import type { NodeProc } from './cluster-procs.js'

export interface Sample {
  node: string
  sentAt: number
  receivedAt: number
  /** The sessions for the id this /poolz answer shows routable, as node/assigned_id. */
  routable: string[]
}

/**
 * Reads /poolz on every node every `everyMs` until stopped, and keeps, per answer, which
 * sessions of `providerId` it showed routable. Times are performance.now() in the test process.
 */
export function samplePoolz(nodes: NodeProc[], providerId: string, everyMs = 10): { samples: Sample[]; stop(): Promise<void> } {
  const samples: Sample[] = []
  let running = true
  const loops = nodes.map(async (n) => {
    while (running) {
      const sentAt = performance.now()
      try {
        const poolz = await n.poolz()
        samples.push({
          node: n.nodeId,
          sentAt,
          receivedAt: performance.now(),
          routable: poolz.pool.filter((r) => r.provider_id === providerId && r.routing_eligible).map((r) => `${r.node_id}/${r.assigned_id}`),
        })
      } catch {
        // A node being killed or paused answers nothing: no sample.
      }
      await new Promise((r) => setTimeout(r, everyMs))
    }
  })
  return {
    samples,
    async stop() {
      running = false
      await Promise.all(loops)
    },
  }
}
