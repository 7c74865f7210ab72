/**
 * Response types of the operator HTTP API (specs/operator-api.md) that more than one program
 * reads: the coordinator writes them, the CLI, the tests and the bench read them.
 */
import type { AuthState, ProviderStatus } from './messages.js'

/** Why a connected session is not routable (routingEligible). */
export type IneligibleReason = 'quarantined_duplicate' | 'lease_pending' | 'cordoned' | 'draining' | 'not_ready' | 'no_free_slots'

export interface PoolzRow {
  provider_id: string
  assigned_id: string
  /** Cluster mode only: the coordinator node that holds the provider's socket. */
  node_id?: string
  auth_state: AuthState
  routing_eligible: boolean
  routing_ineligible_reason?: IneligibleReason
  /** An operator cordoned this provider_id (it stays connected, never routable). */
  cordoned: boolean
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

/** Cluster mode only: the answering node and every node it sees live. */
export interface PoolzCluster {
  node_id: string
  incarnation: string
  state: 'live' | 'fenced' | 'stopped'
  nodes: Array<{ node_id: string; incarnation: string; host: string; started_at: string; sessions: number | null }>
}

export interface PoolzResponse {
  pool: PoolzRow[]
  summary: PoolzSummary
  cluster?: PoolzCluster
}

/** A token as the admin API and the CLI show it: a prefix, never the token or its hash. */
export interface AdminToken {
  token_prefix: string
  provider_id: string
  name: string
  origin: 'self_minted' | 'operator_issued'
  created_at: string
  last_used_at: string | null
  revoked: boolean
  revoked_at: string | null
}

/** POST /admin/tokens: the only time the token is shown. */
export interface IssuedTokenResponse {
  token: string
  token_prefix: string
  provider_id: string
  name: string
  origin: 'operator_issued'
}

/** POST /admin/tokens/{prefix}/revoke. `kicked` is null when no kick was asked for. */
export interface RevokeResponse extends AdminToken {
  kicked: boolean | null
}

export interface PruneResponse {
  applied: boolean
  tokens: AdminToken[]
}

export type AuditReason = 'unproven_token' | 'stale_token' | 'bearerless_duplicate_session' | 'self_minted_session'

export interface AuditOffender {
  reason: AuditReason
  provider_id: string
  token_prefix?: string | null
  assigned_id?: string
  detail: string
}

/** GET /admin/audit/pre-flip. `poolz_checked` is false when live sessions could not be read. */
export interface AuditResponse {
  safe: boolean
  poolz_checked: boolean
  active_tokens: number
  live_sessions: number | null
  offenders: AuditOffender[]
}

export interface CordonRow {
  provider_id: string
  reason: string
  created_at: string
}

/** POST /admin/providers/{id}/cordon and /uncordon. `live`: a connected session was changed. */
export interface CordonResponse {
  provider_id: string
  cordoned: boolean
  live: boolean
}

/** GET /admin/stats: buyer requests and errors per bucket over the last minutes, oldest first. */
export interface StatsResponse {
  bucket_s: number
  buckets: Array<{ start: string; requests: number; errors: number }>
}

/** The error envelope of every operator and buyer endpoint. */
export interface ErrorResponse {
  error: { message: string; type: string; code: string }
}
