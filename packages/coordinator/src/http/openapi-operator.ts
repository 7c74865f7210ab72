import { bool, errors, json, ref, str, type Schema } from './openapi-kit.js'
import { providerId } from './openapi-schemas.js'

const operator = [{ operatorKey: [] }]
const publicRoute: unknown[] = []
const param = (name: string): Schema => ({ $ref: `#/components/parameters/${name}` })

/** Admin string fields: the handler refuses other types, over 1024 characters, and control characters. */
const field = (description: string): Schema => str(description, { maxLength: 1024, pattern: '^[^\\u0000-\\u001f\\u007f]*$' })

/** Admin bodies are optional JSON objects: empty means `{}`; unknown fields are ignored. */
function body(properties: Record<string, Schema>, required: string[] = []): Schema {
  return {
    required: false,
    description: 'a JSON object of at most 16 KiB; an empty body is `{}`',
    content: { 'application/json': { schema: { type: 'object', required, properties } } },
  }
}

/** What any admin route that reads a body, or the store, may answer besides its own errors. */
const BODY_ERRORS = ['invalid_json', 'COORD_BAD_REQUEST', 'request_too_large']
const STORE = 'COORD_STORE_UNAVAILABLE'

/** An operator-only operation; `codes`: its errors besides 401 and 500. */
function op(id: string, summary: string, responses: Record<string, Schema>, codes: string[], extra: Schema = {}): Schema {
  return {
    operationId: id,
    tags: ['operator'],
    summary,
    security: operator,
    ...extra,
    responses: { ...responses, ...errors(['COORD_UNAUTHORIZED', ...codes]) },
  }
}

/** Identity routes check {provider_id} themselves: a malformed one is 400, since 404 means "no pinned key" there. */
const identityId: Schema = {
  name: 'provider_id',
  in: 'path',
  required: true,
  description: 'a malformed one is 400 `COORD_PROVIDER_ID_INVALID`',
  schema: providerId,
}
const IDENTITY_ERRORS = ['COORD_PROVIDER_ID_INVALID', 'COORD_IDENTITY_NOT_PINNED', STORE]

const providerAction = (id: string, summary: string, status: string, description: string): Schema => ({
  post: op(id, summary, { [status]: json(description, ref('SessionAction')) }, ['COORD_NOT_FOUND'], { parameters: [param('ProviderId')] }),
})

/** /healthz, /openapi.json, /poolz, /metrics and the admin API (specs/operator-api.md). */
export const operatorPaths: Record<string, Schema> = {
  '/healthz': {
    get: {
      operationId: 'health',
      tags: ['public'],
      summary: 'Liveness and pool size, for load balancers',
      security: publicRoute,
      responses: {
        '200': json('serving', ref('Health')),
        '503': json('draining for shutdown: take this instance out of rotation', ref('Health')),
        ...errors([]),
      },
    },
  },
  '/openapi.json': {
    get: {
      operationId: 'openapi',
      tags: ['public'],
      summary: 'This document',
      security: publicRoute,
      responses: { '200': json('OpenAPI 3.1; Cache-Control: no-store', { type: 'object' }), ...errors([]) },
    },
  },
  '/operator-proof': {
    get: {
      operationId: 'operatorProof',
      tags: ['public'],
      summary: 'Proof that this server holds the operator key, without revealing it',
      description:
        'HMAC-SHA256, keyed with the operator key, over `poolcoord/operator-proof/v1\\n` and the nonce, as lowercase hex. coordinator-cli checks it before it sends the key.',
      security: publicRoute,
      parameters: [
        {
          name: 'nonce',
          in: 'query',
          required: true,
          description: '32 random bytes as 64 lowercase hex characters',
          schema: str('', { pattern: '^[0-9a-f]{64}$' }),
        },
      ],
      responses: { '200': json('the proof', ref('OperatorProof')), ...errors(['COORD_BAD_REQUEST']) },
    },
  },
  '/poolz': { get: op('poolz', 'Every session in the pool, and a summary', { '200': json('no token or hash ever appears', ref('Poolz')) }, []) },
  '/metrics': {
    get: {
      operationId: 'metrics',
      tags: ['operator'],
      summary: 'Prometheus metrics',
      description: 'Public by default; with COORD_METRICS_REQUIRE_KEY=true, the operator bearer is required.',
      security: [{}, ...operator],
      responses: {
        '200': { description: 'Prometheus text format', content: { 'text/plain; version=0.0.4; charset=utf-8': { schema: str() } } },
        ...errors(['COORD_UNAUTHORIZED']),
      },
    },
  },
  '/admin/tokens': {
    get: op('listTokens', 'List tokens, oldest first', { '200': json('never a token or a hash', ref('TokenList')) }, [STORE], {
      parameters: [{ name: 'active', in: 'query', required: false, description: 'true: unrevoked tokens only', schema: bool() }],
    }),
    post: op(
      'issueToken',
      'Issue a token for a provider_id',
      { '201': json('the only time the token is shown', ref('IssuedToken')) },
      [...BODY_ERRORS, 'COORD_PROVIDER_ID_INVALID', 'COORD_TOKEN_ACTIVE_EXISTS', STORE],
      { requestBody: body({ provider_id: field('1-64 characters of [A-Za-z0-9_.-]'), name: field('a label; the provider_id when absent') }, ['provider_id']) },
    ),
  },
  '/admin/tokens/prune': {
    post: op(
      'pruneTokens',
      'List, or revoke, unproven tokens older than a duration',
      { '200': json('revoked when `apply` is true, listed otherwise', ref('PruneResult')) },
      [...BODY_ERRORS, STORE],
      {
        requestBody: body(
          {
            older_than_s: { type: 'number', minimum: 86_400, description: 'seconds; younger unproven tokens may belong to providers still starting' },
            apply: bool(),
          },
          ['older_than_s'],
        ),
      },
    ),
  },
  '/admin/tokens/{prefix}/revoke': {
    post: op(
      'revokeToken',
      'Revoke the one active token whose prefix starts with {prefix}',
      { '200': json('the revoked token', ref('RevokedToken')) },
      [...BODY_ERRORS, 'COORD_NOT_FOUND', 'COORD_TOKEN_NOT_FOUND', 'COORD_TOKEN_PREFIX_AMBIGUOUS', STORE],
      { parameters: [param('Prefix')], requestBody: body({ kick: bool("also close the provider's live session now (4007)") }) },
    ),
  },
  '/admin/audit/pre-flip': {
    get: op(
      'auditPreFlip',
      'Would turning require_provider_tokens on lock anyone out?',
      { '200': json('see specs/cli.md', ref('Audit')) },
      ['COORD_BAD_REQUEST', STORE],
      {
        parameters: [
          {
            name: 'max_last_used_age_s',
            in: 'query',
            required: false,
            description: 'a token unused for longer is stale',
            schema: { type: 'number', exclusiveMinimum: 0, default: 86_400 },
          },
        ],
      },
    ),
  },
  '/admin/identities': {
    get: op('listIdentities', 'List pinned identity keys, by provider_id', { '200': json('fingerprints, never a key', ref('IdentityList')) }, [STORE]),
  },
  '/admin/identities/{provider_id}/revoke': {
    post: op(
      'revokeIdentity',
      'Block the id until reset (no connect, no recovery), revoke its tokens, and close its live session (4007)',
      { '200': json('blocked; idempotent', ref('IdentityAction')) },
      IDENTITY_ERRORS,
      { parameters: [identityId] },
    ),
  },
  '/admin/identities/{provider_id}/reset': {
    post: op(
      'resetIdentity',
      'Delete the pin and revoke the tokens, so the id may enroll afresh (first use wins again)',
      { '200': json('reset; a live session is not closed', ref('IdentityAction')) },
      IDENTITY_ERRORS,
      { parameters: [identityId] },
    ),
  },
  '/admin/cordons': { get: op('listCordons', 'List cordoned provider ids', { '200': json('stored cordons', ref('CordonList')) }, [STORE]) },
  '/admin/providers/{provider_id}/cordon': {
    post: op(
      'cordon',
      'Keep a provider_id out of routing, across reconnects and restarts',
      { '200': json('cordoned', ref('CordonResult')) },
      [...BODY_ERRORS, 'COORD_NOT_FOUND', STORE],
      {
        parameters: [param('ProviderId')],
        requestBody: body({ reason: field('the first 200 characters are kept') }),
      },
    ),
  },
  '/admin/providers/{provider_id}/uncordon': {
    post: op('uncordon', 'Lift a cordon', { '200': json('uncordoned', ref('CordonResult')) }, ['COORD_NOT_FOUND', STORE], {
      parameters: [param('ProviderId')],
    }),
  },
  '/admin/providers/{provider_id}/drain': providerAction(
    'drain',
    'Drain the live session: no new requests; closed 1000 once its last request ends',
    '202',
    'draining; 404 without a live session',
  ),
  '/admin/providers/{provider_id}/kick': providerAction(
    'kick',
    'Close the live session now (4007); its requests fail over or fail',
    '200',
    'kicked; 404 without a live session',
  ),
  '/admin/stats': {
    get: op('stats', 'Buyer requests and errors per 10 s over the last 15 minutes', { '200': json('oldest bucket first', ref('Stats')) }, []),
  },
}
