import { errors, json, ref, str, type Schema } from './openapi-kit.js'
import { providerId } from './openapi-schemas.js'

const header = (name: string): Schema => ({ $ref: `#/components/headers/${name}` })

/** Response headers of the buyer API (specs/buyer-api.md §2). */
export const buyerHeaders: Record<string, Schema> = {
  RequestId: {
    description: "this request's id, also given to the provider as `request_id`; incoming X-Request-Id headers are ignored",
    schema: str(undefined, { pattern: '^req-[0-9a-f-]{36}$' }),
  },
  PoolProvider: {
    description: 'the provider that served the request; on an error after routing, the last one tried; absent when none was chosen',
    schema: providerId,
  },
  RetryAfter: { description: 'seconds: 1, or 5 while the coordinator drains', schema: { type: 'integer', minimum: 1 } },
}

/** Every 503 of the buyer API carries Retry-After. */
const retryOn503 = (status: number): Record<string, Schema> => (status === 503 ? { 'Retry-After': header('RetryAfter') } : {})

/** Chat errors carry the request id (except the draining refusal, answered before one is made) and, after routing, the provider. */
const chatErrorHeaders = (status: number): Record<string, Schema> => ({
  'X-Request-Id': header('RequestId'),
  'X-Pool-Provider': header('PoolProvider'),
  ...retryOn503(status),
})

const chat: Schema = {
  post: {
    operationId: 'createChatCompletion',
    tags: ['buyer'],
    summary: 'Run a chat completion on one provider of the pool',
    description:
      'The body is checked just enough to route it (specs/buyer-api.md §1.1), then the request runs on the provider chosen by selection (§3), with at most one failover before any byte reaches the buyer (§4). No buyer authentication: put the coordinator behind a gateway.',
    parameters: [
      {
        name: 'X-Pool-Provider',
        in: 'header',
        required: false,
        description: 'hard pin: only this provider may serve; no substitute, no failover (503 `no_provider_available` otherwise)',
        schema: providerId,
      },
    ],
    requestBody: {
      required: true,
      description: 'at most 1 MiB (COORD_MAX_BODY_BYTES) of UTF-8 JSON',
      content: { 'application/json': { schema: ref('ChatCompletionRequest') } },
    },
    responses: {
      '200': {
        description:
          '`stream: true`: an SSE stream, each provider chunk written as it arrives; a failure after the first byte ends it with an error event (the envelope below) and `data: [DONE]`. Otherwise one JSON body, held until the provider ends (at most 16 MiB).',
        headers: {
          'X-Request-Id': { ...buyerHeaders.RequestId, required: true },
          'X-Pool-Provider': { ...buyerHeaders.PoolProvider, required: true },
        },
        content: {
          'application/json': { schema: ref('ChatCompletion') },
          'text/event-stream': {
            schema: str('`data: <chat.completion.chunk JSON>` events, then `data: [DONE]`; Cache-Control: no-cache, X-Accel-Buffering: no'),
          },
        },
      },
      ...errors(
        [
          'invalid_request',
          'invalid_json',
          'context_length_exceeded',
          'model_not_found',
          'request_too_large',
          'provider_error',
          'no_provider_available',
          'provider_unavailable',
          'coordinator_busy',
          'coordinator_draining',
          'provider_timeout',
        ],
        chatErrorHeaders,
      ),
    },
  },
}

const models: Schema = {
  get: {
    operationId: 'listModels',
    tags: ['buyer'],
    summary: 'Models some routable provider serves now, with their capacity',
    responses: { '200': json('the OpenAI list shape, sorted by id', ref('ModelList')), ...errors(['coordinator_draining'], retryOn503) },
  },
}

const model: Schema = {
  get: {
    operationId: 'retrieveModel',
    tags: ['buyer'],
    summary: 'One model: its entry in GET /v1/models',
    parameters: [
      {
        name: 'id',
        in: 'path',
        required: true,
        description:
          'The model id, percent-encoded (`meta-llama%2FLlama-3-8B`). Everything after `/v1/models/` up to `?` is the id, percent-decoded once, so an unencoded `/` is accepted too. Ids are 1-256 characters without control characters; a longer or undecodable one is `model_not_found`.',
        schema: str(undefined, { minLength: 1 }),
      },
    ],
    responses: {
      '200': json('the same object as the entry of GET /v1/models for this id', ref('Model')),
      ...errors(['model_not_found', 'coordinator_draining'], retryOn503),
    },
  },
}

/** The buyer API: OpenAI-compatible, no authentication, refused with 503 while draining. */
export const buyerPaths: Record<string, Schema> = {
  '/v1/chat/completions': chat,
  '/v1/models': models,
  '/v1/models/{id}': model,
}
