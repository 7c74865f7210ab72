/**
 * Response types of the operator HTTP API (specs/operator-api.md) that more than one program
 * reads: the coordinator writes them, the CLI, the tests and the bench read them.
 */
import type { AuthState, ProviderStatus } from './messages.js'

/** Why a connected session is not routable (routingEligible). */
export type IneligibleReason = 'quarantined_duplicate' | 'draining' | 'not_ready' | 'no_free_slots'

export interface PoolzRow {
  provider_id: string
  assigned_id: string
  auth_state: AuthState
  routing_eligible: boolean
  routing_ineligible_reason?: IneligibleReason
  status: ProviderStatus
  slots_free: number
  slots_total: number
  effective_free_slots: number
  in_flight: number
  consecutive_failures: number
  cooldown_until: string | null
  max_concurrency: number
  max_context_tokens: number
  model_id: string
  models: string[]
  hostname: string
  binary_version: string
  /** The first 12 characters of the token that admitted the session; never the token. */
  token_prefix: string | null
  connected_at: string
  last_heartbeat_at: string | null
  last_inbound_at: string
}

export interface PoolzSummary {
  total: number
  routable: number
  by_auth_state: Record<AuthState, number>
  slots: { total: number; free: number; effective_free: number; in_flight: number }
  models: Array<{ id: string; providers: number; routable: number }>
}

export interface PoolzResponse {
  pool: PoolzRow[]
  summary: PoolzSummary
}
