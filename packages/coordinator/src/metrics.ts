import { Counter, Gauge, Registry as PromRegistry, collectDefaultMetrics } from 'prom-client'
import { AUTH_STATES } from '@poolcoord/protocol'
import type { AdmissionOutcome } from './admission/admission-outcome.js'
import type { ProviderSession } from './pool/provider-session.js'
import { routingEligible } from './pool/routing-eligible.js'
import { HotCounter, HotHistogram } from './hot-metrics.js'
import type { DisconnectPhase } from './routing/dispatcher.js'
import type { AttemptFailure } from './routing/failure-policy.js'

/**
 * How a buyer request ended: `complete`, the buyer leaving (`buyer_disconnected`) or reading
 * too slowly (`buyer_too_slow`), or the public code toPublicError gave its error. A closed set
 * by construction: every value comes from errors.ts or this comment, never from input.
 */
export type RequestStatus = string

export interface Metrics {
  readonly registry: PromRegistry
  admission(outcome: AdmissionOutcome): void
  request(r: { status: RequestStatus; stream: boolean; durationS: number; firstChunkS: number | null }): void
  failover(reason: AttemptFailure): void
  providerDisconnect(phase: DisconnectPhase): void
  /** Cluster mode (cluster/cluster-node.ts ClusterMetrics). */
  leaseClaim(outcome: string): void
  remote(role: 'origin' | 'owner', outcome: string): void
  fenced(): void
}

/** What the cluster gauges read; null in single-node mode. */
export interface ClusterGauges {
  live: boolean
  liveNodes: number
  remoteInFlight: number
}

/**
 * One prom-client registry per coordinator instance, so tests can run many in one process.
 * Labels take closed sets only: never a token, request id or provider-supplied string.
 */
export function createMetrics(opts: {
  sessions: () => Iterable<ProviderSession>
  inFlight: () => number
  cluster?: () => ClusterGauges | null
  defaultMetrics?: boolean
}): Metrics {
  const registry = new PromRegistry()
  if (opts.defaultMetrics) collectDefaultMetrics({ register: registry, prefix: 'poolcoord_' })
  const counter = (name: string, help: string, labelNames: string[]) => new Counter({ name, help, labelNames, registers: [registry] })
  // Observed on every buyer request: hot-metrics.ts, same output, no per-call label hashing.
  const streamHistogram = (name: string, help: string, buckets: number[]) => new HotHistogram(registry, name, help, ['stream'], buckets)
  const admissions = counter('poolcoord_admissions_total', 'Provider admission outcomes.', ['outcome'])
  new Gauge({
    name: 'poolcoord_pool_sessions',
    help: 'Admitted provider sessions on this node (in cluster mode: the sockets this node holds) by auth state and routability.',
    labelNames: ['auth_state', 'routable'],
    registers: [registry],
    collect() {
      const counts = new Map<string, number>()
      for (const a of AUTH_STATES) for (const r of ['true', 'false']) counts.set(`${a}|${r}`, 0)
      for (const s of opts.sessions()) {
        const key = `${s.authState}|${routingEligible(s).eligible}`
        counts.set(key, (counts.get(key) ?? 0) + 1)
      }
      this.reset()
      for (const [key, n] of counts) {
        const [auth_state, routable] = key.split('|') as [string, string]
        this.set({ auth_state, routable }, n)
      }
    },
  })
  const requests = new HotCounter(registry, 'poolcoord_requests_total', 'Buyer chat completion requests by final status and stream flag.', ['status', 'stream'])
  const duration = streamHistogram(
    'poolcoord_request_duration_seconds',
    'Buyer request time from arrival to the last byte, by stream flag.',
    [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
  )
  const firstChunk = streamHistogram(
    'poolcoord_first_chunk_seconds',
    'Time from buyer request arrival to the first response chunk from a provider.',
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
  )
  const failovers = counter('poolcoord_failovers_total', 'Requests moved to a second provider before any byte reached the buyer, by cause.', ['reason'])
  const disconnects = counter('poolcoord_provider_disconnects_total', 'Admitted provider sockets that closed, by what they were doing.', ['phase'])
  new Gauge({
    name: 'poolcoord_requests_in_flight',
    help: 'Requests dispatched to providers and not yet ended.',
    registers: [registry],
    collect() {
      this.set(opts.inFlight())
    },
  })
  const claims = counter('poolcoord_cluster_lease_claims_total', 'Cluster mode: session lease claims at admission, by outcome.', ['outcome'])
  const remote = counter(
    'poolcoord_cluster_remote_attempts_total',
    'Cluster mode: node-to-node attempts. role=origin: this node sent them (outcome accepted, refused, no_responders, timeout, lost, gap); role=owner: this node ran them for another (accepted, or why not).',
    ['role', 'outcome'],
  )
  const fences = counter('poolcoord_cluster_fences_total', 'Cluster mode: times this node fenced itself (closing its provider sockets 4011).', [])
  const clusterGauge = (name: string, help: string, read: (g: ClusterGauges) => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        const g = opts.cluster?.()
        if (g !== null && g !== undefined) this.set(read(g))
      },
    })
  if (opts.cluster !== undefined) {
    clusterGauge('poolcoord_cluster_node_live', 'Cluster mode: 1 while this node may route, 0 while fenced.', (g) => (g.live ? 1 : 0))
    clusterGauge('poolcoord_cluster_live_nodes', 'Cluster mode: coordinator nodes live in pc_nodes, as last polled.', (g) => g.liveNodes)
    clusterGauge('poolcoord_cluster_remote_in_flight', 'Cluster mode: attempts this node runs on other nodes now.', (g) => g.remoteInFlight)
  }
  return {
    registry,
    leaseClaim: (outcome) => claims.inc({ outcome }),
    remote: (role, outcome) => remote.inc({ role, outcome }),
    fenced: () => fences.inc(),
    admission: (outcome) => admissions.inc({ outcome: outcome.slice('admission.'.length) }),
    request: (r) => {
      const stream = r.stream ? 'true' : 'false'
      requests.inc(r.status, stream)
      duration.observe(r.durationS, stream)
      if (r.firstChunkS !== null) firstChunk.observe(r.firstChunkS, stream)
    },
    failover: (reason) => failovers.inc({ reason }),
    providerDisconnect: (phase) => disconnects.inc({ phase }),
  }
}
