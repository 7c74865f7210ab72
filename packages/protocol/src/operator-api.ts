/**
 * Response types of the operator HTTP API (specs/operator-api.md) that more than one program
 * reads: the coordinator writes them, the CLI, the tests and the bench read them.
 */
import type { AuthState, ProviderStatus } from './messages.js'

/** Why a connected session is not routable (routingEligible). */
export type IneligibleReason = 'quarantined_duplicate' | 'lease_pending' | 'cordoned' | 'draining' | 'not_ready' | 'no_free_slots'

/**
 * A failed attempt the provider is held to: what starts and extends its failure cooldown
 * (specs/buyer-api.md §3). The names are the coordinator's failure codes.
 */
export type FailureReason =
  | 'disconnect'
  | 'unreachable'
  | 'queue_full'
  | 'model_not_loaded'
  | 'provider_internal'
  | 'provider_cancelled'
  | 'first_chunk_timeout'
  | 'request_timeout'
  | 'response_too_large'
export const FAILURE_REASONS: readonly FailureReason[] = [
  'disconnect',
  'unreachable',
  'queue_full',
  'model_not_loaded',
  'provider_internal',
  'provider_cancelled',
  'first_chunk_timeout',
  'request_timeout',
  'response_too_large',
]

/** Misbehaviour charged to a provider_id as a strike; strikes outlive the connection (specs/operator-api.md). */
export type StrikeReason = 'invalid_frame'
export const STRIKE_REASONS: readonly StrikeReason[] = ['invalid_frame']

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
  /** The failure that started or last extended the current run of failures; null when consecutive_failures is 0. */
  last_failure_reason: FailureReason | null
  cooldown_until: string | null
  /** In cooldown, and sidelined (ranked last) for at least one of its models: the ejection cap did not release it there. */
  cooling_down: boolean
  /** In cooldown, and released by the ejection cap for at least one of its models; releases are per model, so both flags may hold. */
  cooldown_capped: boolean
  /** Strikes this coordinator charged to the provider_id within the last hour; they survive reconnects. */
  strikes: number
  last_strike_reason: StrikeReason | null
  max_concurrency: number
  max_context_tokens: number
  model_id: string
  models: string[]
  hostname: string
  binary_version: string
  /** The first 12 characters of the token that admitted the session; never the token. */
  token_prefix: string | null
  /** Identity v2: whether the session proved a pinned key, its generation, and the key's fingerprint (never the key). */
  identity: PoolzIdentity
  connected_at: string
  last_heartbeat_at: string | null
  last_inbound_at: string
}

export interface PoolzIdentity {
  pinned: boolean
  generation: number | null
  /** First 12 hex characters of SHA-256 over the key's 32 raw bytes. */
  key_fingerprint: string | null
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
  /** Key-pinned ids only: when the token stops validating (null: never). */
  expires_at: string | null
  /** The token was renewed: it still validates until then. */
  grace_until: string | null
}

/** A pinned identity key as the admin API and the CLI show it: a fingerprint, never the key. */
export interface AdminIdentity {
  provider_id: string
  generation: number
  key_fingerprint: string
  previous_key_fingerprint: string | null
  previous_valid_until: string | null
  created_at: string
  rotated_at: string | null
  revoked: boolean
  revoked_at: string | null
}

/** POST /admin/identities/{id}/revoke and /reset. */
export interface IdentityActionResponse {
  provider_id: string
  action: 'revoked' | 'reset'
  /** Tokens of the id that this call revoked (not those revoked before). */
  revoked_tokens: number
  /**
   * Revoke: whether the id's live session was closed (4007). Null for reset, which closes
   * nothing, and when no coordinator ran the operation (the CLI on the database).
   */
  kicked: boolean | null
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
