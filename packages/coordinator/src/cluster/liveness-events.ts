import type { NatsLinkStatus } from './nats-link.js'

/** What NodeLiveness (node-liveness.ts) tells its caller: its events and its health. */

/**
 * `deadline`: no renewal succeeded in time. `key_lost`: the key expired or was deleted.
 * `conflict`: another process holds this node id.
 */
export type FenceReason = 'deadline' | 'key_lost' | 'conflict'

export interface FencedEvent {
  reason: FenceReason
  /** When the node noticed. For `deadline` it stopped routing at `deadline` already (isLive reads the clock). */
  at: number
  /** Send time of the last renewal that succeeded; null if none did. */
  lastRenewalSentAt: number | null
  deadline: number
}

export interface UnfencedEvent {
  at: number
  /** Every unfence starts a new incarnation: the sockets of the old one were closed at the fence. */
  incarnation: string
  fencedForMs: number
}

/** What /healthz will show about the cluster (specs/cluster.md §6). */
export interface ClusterHealth {
  node_id: string
  incarnation: string
  state: 'live' | 'fenced' | 'stopped'
  fence_reason: FenceReason | null
  nats: NatsLinkStatus
  live_nodes: number
}
