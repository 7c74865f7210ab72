import { buyerHeaders, buyerPaths } from './openapi-buyer.js'
import { operatorPaths } from './openapi-operator.js'
import { prefixParam, providerId, schemas } from './openapi-schemas.js'

/**
 * GET /openapi.json: the buyer and operator HTTP APIs as OpenAPI 3.1. Built from the same
 * types and error mapping the handlers use (openapi-schemas.ts, openapi-kit.ts); a test checks
 * its `paths` against the route table and validates real responses against it. Public: it
 * describes the API and holds no secret. The provider WebSocket (/ws/provider, specs/protocol.md)
 * is an upgrade, not an HTTP route, and pages for people (`page: true` routes) are not API.
 */
export function openApiDocument(version: string): Record<string, unknown> {
  return {
    openapi: '3.1.0',
    info: {
      title: 'poolcoord coordinator',
      version,
      description:
        'An OpenAI-compatible buyer API over a pool of providers, and the operator API. Normative text: specs/buyer-api.md, specs/operator-api.md, specs/errors.md. Every error is `{"error": {"message", "type", "code"}}`.',
      license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
    },
    tags: [
      { name: 'buyer', description: 'OpenAI-compatible; no authentication (put a gateway in front); 503 `coordinator_draining` while the coordinator drains' },
      { name: 'operator', description: 'requires the operator bearer' },
      { name: 'public', description: 'no authentication' },
    ],
    paths: { ...buyerPaths, ...operatorPaths },
    components: {
      schemas,
      securitySchemes: {
        operatorKey: {
          type: 'http',
          scheme: 'bearer',
          description: 'the operator key (COORD_OPERATOR_KEY or COORD_DATA_DIR/operator-key), compared in constant time',
        },
      },
      headers: {
        ...buyerHeaders,
        WWWAuthenticate: { description: 'on every 401', schema: { const: 'Bearer' } },
      },
      parameters: {
        ProviderId: {
          name: 'provider_id',
          in: 'path',
          required: true,
          description: 'a malformed one makes the path unknown: 404 `COORD_NOT_FOUND`',
          schema: providerId,
        },
        Prefix: {
          name: 'prefix',
          in: 'path',
          required: true,
          description: 'a malformed one makes the path unknown: 404 `COORD_NOT_FOUND`',
          schema: prefixParam,
        },
      },
    },
  }
}
