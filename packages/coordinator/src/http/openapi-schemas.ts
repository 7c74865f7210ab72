import {
  AUTH_STATES,
  FAILURE_REASONS,
  STRIKE_REASONS,
  PROVIDER_ID_RE,
  PROVIDER_STATUSES,
  TOKEN_PREFIX_RE,
  type AdminIdentity,
  type AdminToken,
  type AuditOffender,
  type AuditResponse,
  type CordonResponse,
  type CordonRow,
  type IdentityActionResponse,
  type IneligibleReason,
  type IssuedTokenResponse,
  type PoolzCluster,
  type PoolzResponse,
  type PoolzRow,
  type PoolzSummary,
  type PruneResponse,
  type RevokeResponse,
  type StatsResponse,
} from '@poolcoord/protocol'
import type { ModelEntry } from '../routing/list-models.js'
import { MODEL_MAX } from './chat-request.js'
import { arrayOf, bool, int, nullable, obj, oneOfValues, ref, str, time, type Schema } from './openapi-kit.js'

/** GET /healthz. Not a protocol type: only load balancers and people read it. */
interface Health {
  status: 'ok' | 'draining' | 'fenced'
  version: string
  uptime_s: number
  pool: { total: number; routable: number }
  node_id?: string
  cluster?: { state: string; incarnation: string; fence_reason: string | null; nats: string; live_nodes: number }
}

/** POST /admin/providers/{provider_id}/drain and /kick. */
interface SessionAction {
  provider_id: string
  assigned_id: string
  action: 'drain' | 'kick'
  in_flight: number
}

const INELIGIBLE: readonly IneligibleReason[] = ['quarantined_duplicate', 'lease_pending', 'cordoned', 'draining', 'not_ready', 'no_free_slots']
const NO_CONTROL = '^[^\\u0000-\\u001f\\u007f]*$'

export const providerId = str('1-64 characters of [A-Za-z0-9_.-]', { pattern: PROVIDER_ID_RE.source })
export const tokenPrefix = str('the first 12 hex characters of a token; never the token', { pattern: '^[0-9a-f]{12}$' })
const fingerprint = (description: string): Schema => str(description, { pattern: '^[0-9a-f]{12}$' })
export const prefixParam = str('6-12 lowercase hex characters: the start of a token prefix', { pattern: TOKEN_PREFIX_RE.source })

const model = obj<ModelEntry>({
  id: str('as providers announce it: exact, case-sensitive'),
  object: { const: 'model' },
  created: int("the coordinator's start time, Unix seconds: the pool has no better date for a model"),
  owned_by: { const: 'poolcoord' },
  provider_count: int('routable providers serving the model'),
  total_slots: int('the sum of their max_concurrency'),
  free_slots: int('the sum of their effective free slots'),
  max_context_tokens: int('the largest context among them'),
})

const adminToken = obj<AdminToken>(
  {
    token_prefix: tokenPrefix,
    provider_id: providerId,
    name: str(),
    origin: oneOfValues(['self_minted', 'operator_issued']),
    created_at: time(),
    last_used_at: nullable(time()),
    revoked: bool(),
    revoked_at: nullable(time()),
    expires_at: nullable(time('key-pinned ids only: when the token stops validating; null: never')),
    grace_until: nullable(time('the token was renewed and still validates until then')),
  },
  { description: 'a token as operators see it: a prefix, never the token or its hash' },
)

const poolzRow = obj<PoolzRow>(
  {
    provider_id: providerId,
    assigned_id: str('this connection'),
    node_id: str('cluster mode only: the node that holds the socket'),
    auth_state: oneOfValues(AUTH_STATES),
    routing_eligible: bool('the result of routingEligible'),
    routing_ineligible_reason: oneOfValues(INELIGIBLE, 'present only when not eligible: the first reason that applies, in this order'),
    cordoned: bool('an operator cordoned this provider_id'),
    status: oneOfValues(PROVIDER_STATUSES, 'as last reported by the provider'),
    slots_free: int(),
    slots_total: int(),
    effective_free_slots: int("the coordinator's own slot accounting"),
    in_flight: int(),
    consecutive_failures: int('failed attempts in a row; 0 after a complete answer'),
    last_failure_reason: nullable(oneOfValues(FAILURE_REASONS, 'the failure that last started or extended the cooldown; null when consecutive_failures is 0')),
    cooldown_until: nullable(time('when the failure cooldown ends (it may have passed); null when healthy')),
    cooling_down: bool('in cooldown and sidelined for at least one of its models: selection ranks it last there, the ejection cap not releasing it'),
    cooldown_capped: bool(
      'in cooldown, and released by the ejection cap (COORD_MAX_EJECTION_PERCENT) for at least one of its models; may be true with cooling_down',
    ),
    strikes: int('strikes charged to the provider_id in the last hour on this node; they survive reconnects'),
    last_strike_reason: nullable(oneOfValues(STRIKE_REASONS, 'the reason of the latest strike; null with no strike')),
    max_concurrency: int(),
    max_context_tokens: int(),
    model_id: str(),
    models: arrayOf(str()),
    hostname: str(),
    binary_version: str(),
    token_prefix: nullable(str('null for a quarantined duplicate', { pattern: '^[0-9a-f]{12}$' })),
    identity: obj<PoolzRow['identity']>(
      {
        pinned: bool('the session proved a pinned identity key (identity v2)'),
        generation: nullable(int('the key generation; null when not pinned')),
        key_fingerprint: nullable(fingerprint('first 12 hex of SHA-256 over the raw key; never the key')),
      },
      { description: 'identity v2' },
    ),
    connected_at: time(),
    last_heartbeat_at: nullable(time()),
    last_inbound_at: time(),
  },
  { optional: ['routing_ineligible_reason', 'node_id'] },
)

const poolzSummary = obj<PoolzSummary>({
  total: int('every registered session, quarantined duplicates included'),
  routable: int('sessions passing routingEligible'),
  by_auth_state: obj<PoolzSummary['by_auth_state']>({ key_proven: int(), bearer_validated: int(), self_minted: int(), bearerless_duplicate: int() }),
  slots: obj<PoolzSummary['slots']>({
    total: int(),
    free: int(),
    effective_free: int('over routable sessions only'),
    in_flight: int(),
  }),
  models: arrayOf(obj<PoolzSummary['models'][number]>({ id: str(), providers: int(), routable: int() }), 'sorted by id'),
})

const adminIdentity = obj<AdminIdentity>(
  {
    provider_id: providerId,
    generation: int('1 at enrolment, one more at each rotation'),
    key_fingerprint: fingerprint('the current key: first 12 hex of SHA-256 over its 32 raw bytes; never the key'),
    previous_key_fingerprint: nullable(fingerprint('the key before the last rotation; null before any')),
    previous_valid_until: nullable(time('until when the previous key may still connect')),
    created_at: time('when the key was pinned (enrolment)'),
    rotated_at: nullable(time()),
    revoked: bool('revoke-identity blocked the id until reset-identity'),
    revoked_at: nullable(time()),
  },
  { description: 'a pinned identity key as operators see it: fingerprints, never a key' },
)

const offender = obj<AuditOffender>(
  {
    reason: oneOfValues(['unproven_token', 'stale_token', 'bearerless_duplicate_session', 'self_minted_session']),
    provider_id: str(),
    token_prefix: nullable(str()),
    assigned_id: str(),
    detail: str(),
  },
  { optional: ['token_prefix', 'assigned_id'] },
)

/** Everything under components.schemas. */
export const schemas: Record<string, Schema> = {
  ChatCompletionRequest: {
    type: 'object',
    description:
      'The OpenAI chat completion request. The coordinator checks `model`, `messages` and `stream` only; every other field (sampling parameters, tools, fields it does not know) reaches the provider byte for byte.',
    required: ['model', 'messages'],
    properties: {
      model: str(`1-${MODEL_MAX} UTF-16 code units, no control characters; matched exactly against the models providers serve`, {
        minLength: 1,
        maxLength: MODEL_MAX,
        pattern: NO_CONTROL,
      }),
      messages: { type: 'array', minItems: 1, description: "non-empty; its items are the provider's business" },
      stream: { type: ['boolean', 'null'], description: 'true: an SSE stream; false, null or absent: one JSON body' },
    },
    additionalProperties: true,
  },
  ChatCompletion: {
    type: 'object',
    description: "the provider's `chat.completion` object, relayed unchanged once the provider has ended (OpenAI's shape)",
  },
  Model: model,
  ModelList: obj<{ object: 'list'; data: ModelEntry[] }>({ object: { const: 'list' }, data: arrayOf(ref('Model'), 'sorted by id') }),
  Health: obj<Health>(
    {
      status: oneOfValues(['ok', 'draining', 'fenced'], 'draining and fenced answer 503'),
      version: str("the coordinator's version"),
      uptime_s: int(),
      pool: obj<Health['pool']>({ total: int('the whole pool: in cluster mode, every live node'), routable: int('sessions passing routingEligible') }),
      node_id: str('cluster mode only: this node'),
      cluster: obj<NonNullable<Health['cluster']>>(
        {
          state: oneOfValues(['live', 'fenced', 'stopped']),
          incarnation: str('changes on every start and every unfence'),
          fence_reason: nullable(oneOfValues(['deadline', 'key_lost', 'conflict'])),
          nats: oneOfValues(['connected', 'disconnected', 'closed']),
          live_nodes: int('nodes in pc_nodes at the last poll, this one included'),
        },
        { description: 'cluster mode only (specs/cluster.md §6)' },
      ),
    },
    { optional: ['node_id', 'cluster'] },
  ),
  OperatorProof: obj<{ proof: string }>({ proof: str('64 lowercase hex characters', { pattern: '^[0-9a-f]{64}$' }) }),
  PoolzRow: poolzRow,
  PoolzSummary: poolzSummary,
  Poolz: obj<PoolzResponse>(
    {
      pool: arrayOf(ref('PoolzRow'), 'sorted by provider_id'),
      summary: ref('PoolzSummary'),
      cluster: obj<PoolzCluster>(
        {
          node_id: str('the node that answered'),
          incarnation: str(),
          state: oneOfValues(['live', 'fenced', 'stopped']),
          nodes: arrayOf(
            obj<PoolzCluster['nodes'][number]>({
              node_id: str(),
              incarnation: str(),
              host: str(),
              started_at: str('when this incarnation began, on its wall clock'),
              sessions: nullable(int('sessions its last snapshot lists; null before one arrived')),
            }),
            'every node in pc_nodes at the last poll, sorted by node_id',
          ),
        },
        { description: 'cluster mode only (specs/cluster.md §11)' },
      ),
    },
    { optional: ['cluster'] },
  ),
  AdminToken: adminToken,
  TokenList: obj<{ tokens: AdminToken[] }>({ tokens: arrayOf(ref('AdminToken'), 'oldest first') }),
  IssuedToken: obj<IssuedTokenResponse>({
    token: str('the token: shown this once, never again', { pattern: '^[0-9a-f]{64}$' }),
    token_prefix: tokenPrefix,
    provider_id: providerId,
    name: str(),
    origin: { const: 'operator_issued' },
  }),
  RevokedToken: obj<RevokeResponse>({
    ...(adminToken.properties as Record<keyof AdminToken, Schema>),
    kicked: nullable(bool('whether a live session was closed; null when no kick was asked for')),
  }),
  AdminIdentity: adminIdentity,
  IdentityList: obj<{ identities: AdminIdentity[] }>({ identities: arrayOf(ref('AdminIdentity'), 'sorted by provider_id') }),
  IdentityAction: obj<IdentityActionResponse>({
    provider_id: providerId,
    action: oneOfValues(['revoked', 'reset']),
    revoked_tokens: int('tokens of the id this call revoked'),
    kicked: nullable(bool("revoke: whether the id's live session was closed (4007); null for reset, which closes nothing")),
  }),
  PruneResult: obj<PruneResponse>({ applied: bool(), tokens: arrayOf(ref('AdminToken')) }),
  AuditOffender: offender,
  Audit: obj<AuditResponse>({
    safe: bool('turning require_provider_tokens on would lock no one out'),
    poolz_checked: bool(),
    active_tokens: int(),
    live_sessions: nullable(int()),
    offenders: arrayOf(ref('AuditOffender')),
  }),
  CordonRow: obj<CordonRow>({ provider_id: providerId, reason: str(), created_at: time() }),
  CordonList: obj<{ cordons: CordonRow[] }>({ cordons: arrayOf(ref('CordonRow')) }),
  CordonResult: obj<CordonResponse>({ provider_id: providerId, cordoned: bool(), live: bool('a connected session was changed') }),
  SessionAction: obj<SessionAction>({
    provider_id: providerId,
    assigned_id: str(),
    action: oneOfValues(['drain', 'kick']),
    in_flight: int('requests the session held when the action was taken'),
  }),
  Stats: obj<StatsResponse>({
    bucket_s: int(),
    buckets: arrayOf(obj<StatsResponse['buckets'][number]>({ start: time(), requests: int(), errors: int() }), 'oldest first'),
  }),
}
