/**
 * Every error the coordinator raises on purpose carries a stable `code`. This module is the one
 * place that maps codes to HTTP statuses; close codes for the provider socket live in
 * protocol/close-codes.ts. Anything that is not a CoordinatorError is internal: clients see only
 * a generic message and COORD_INTERNAL.
 */
export class CoordinatorError extends Error {
  override name = 'CoordinatorError'
  /**
   * A 5xx normally reaches the client with a generic message. Classes whose message is fixed
   * text about the pool (never about internals) set this so buyers learn what went wrong.
   */
  readonly exposeMessage: boolean = false
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
  }
}

export class ConfigError extends CoordinatorError {
  override name = 'ConfigError'
  constructor(message: string) {
    super('COORD_CONFIG_INVALID', message)
  }
}

/** The partial unique index refused a second unrevoked token for one provider_id. */
export class ActiveTokenExistsError extends CoordinatorError {
  override name = 'ActiveTokenExistsError'
  constructor(readonly providerId: string) {
    super('COORD_TOKEN_ACTIVE_EXISTS', 'an active token already exists for this provider_id')
  }
}

/** A self-minted token was refused because the id has a pinned key: such an id is never self-healed. */
export class IdentityPinnedError extends CoordinatorError {
  override name = 'IdentityPinnedError'
  constructor(readonly providerId: string) {
    super('COORD_IDENTITY_PINNED', 'this provider_id has a pinned identity key')
  }
}

/** The token store could not answer. Callers fail closed. */
export class StoreUnavailableError extends CoordinatorError {
  override name = 'StoreUnavailableError'
  /**
   * @param settled resolves once the abandoned operation has really finished, committed or not:
   * a caller that must learn the store's true state reads it after this, not before.
   */
  constructor(
    cause: unknown,
    readonly settled: Promise<void> = Promise.resolve(),
  ) {
    super('COORD_STORE_UNAVAILABLE', 'token store unavailable', { cause })
  }
}

/** Another live process (pid) holds the embedded database. */
export class DatabaseLockedError extends CoordinatorError {
  override name = 'DatabaseLockedError'
  constructor(readonly pid: number) {
    super(
      'COORD_DB_LOCKED',
      `the embedded database is in use by process ${pid}; stop it first, or use PostgreSQL (DATABASE_URL) to work while the coordinator runs`,
    )
  }
}

/** Cluster mode: no NATS server in COORD_NATS_URL answered at start-up (a running node reconnects by itself instead). */
export class NatsUnavailableError extends CoordinatorError {
  override name = 'NatsUnavailableError'
  constructor(servers: readonly string[], cause: unknown) {
    super('COORD_NATS_UNAVAILABLE', `no NATS server in COORD_NATS_URL (${servers.join(', ')}) answered: is nats-server running and reachable?`, { cause })
  }
}

export class InvalidProviderIdError extends CoordinatorError {
  override name = 'InvalidProviderIdError'
  constructor() {
    super('COORD_PROVIDER_ID_INVALID', 'provider_id must be 1-64 characters of [A-Za-z0-9_.-], not dots alone')
  }
}

export class TokenPrefixInvalidError extends CoordinatorError {
  override name = 'TokenPrefixInvalidError'
  constructor() {
    super('COORD_TOKEN_PREFIX_INVALID', 'token prefix must be 6 to 12 lowercase hex characters')
  }
}

export class TokenPrefixAmbiguousError extends CoordinatorError {
  override name = 'TokenPrefixAmbiguousError'
  constructor() {
    super('COORD_TOKEN_PREFIX_AMBIGUOUS', 'token prefix matches more than one active token')
  }
}

export class TokenNotFoundError extends CoordinatorError {
  override name = 'TokenNotFoundError'
  constructor() {
    super('COORD_TOKEN_NOT_FOUND', 'no active token matches')
  }
}

/** No pinned identity key for this provider_id (revoke-identity, reset-identity). */
export class IdentityNotPinnedError extends CoordinatorError {
  override name = 'IdentityNotPinnedError'
  constructor() {
    super('COORD_IDENTITY_NOT_PINNED', 'no identity key is pinned for this provider_id')
  }
}

/** An operator request with a missing or out-of-range field. `message` is fixed text naming it. */
export class UsageError extends CoordinatorError {
  override name = 'UsageError'
  constructor(message: string) {
    super('COORD_BAD_REQUEST', message)
  }
}

export class UnauthorizedError extends CoordinatorError {
  override name = 'UnauthorizedError'
  constructor() {
    super('COORD_UNAUTHORIZED', 'operator bearer token required')
  }
}

export class NotFoundError extends CoordinatorError {
  override name = 'NotFoundError'
  constructor() {
    super('COORD_NOT_FOUND', 'not found')
  }
}

export class MethodNotAllowedError extends CoordinatorError {
  override name = 'MethodNotAllowedError'
  constructor(readonly allow: string) {
    super('COORD_METHOD_NOT_ALLOWED', 'method not allowed')
  }
}

/*
 * Buyer API errors. Their codes are snake_case without a prefix, as OpenAI's are, because
 * buyers' clients and gateways match on them (`model_not_found`, `invalid_json`, ...).
 */

export class RequestTooLargeError extends CoordinatorError {
  override name = 'RequestTooLargeError'
  /** `what` is fixed text naming the limit that was passed, never input. */
  constructor(what: string) {
    super('request_too_large', what)
  }
}

export class InvalidJsonError extends CoordinatorError {
  override name = 'InvalidJsonError'
  constructor() {
    super('invalid_json', 'request body is not a valid JSON object')
  }
}

export class InvalidRequestError extends CoordinatorError {
  override name = 'InvalidRequestError'
  /** `message` must be fixed text naming a field, never an echo of buyer input. */
  constructor(message: string) {
    super('invalid_request', message)
  }
}

export class ModelNotFoundError extends CoordinatorError {
  override name = 'ModelNotFoundError'
  constructor() {
    super('model_not_found', 'no provider in the pool serves this model')
  }
}

export class NoProviderAvailableError extends CoordinatorError {
  override name = 'NoProviderAvailableError'
  override readonly exposeMessage = true
  constructor(pinned: boolean) {
    super('no_provider_available', pinned ? 'the pinned provider is not available for this request' : 'no provider is available for this model; retry shortly')
  }
}

export class ProviderUnavailableError extends CoordinatorError {
  override name = 'ProviderUnavailableError'
  override readonly exposeMessage = true
  constructor() {
    super('provider_unavailable', 'the selected provider could not take the request; retry shortly')
  }
}

export class ProviderError extends CoordinatorError {
  override name = 'ProviderError'
  override readonly exposeMessage = true
  constructor() {
    super('provider_error', 'the provider failed to complete the request')
  }
}

/** The coordinator is draining for shutdown: it takes no new work. */
export class DrainingError extends CoordinatorError {
  override name = 'DrainingError'
  override readonly exposeMessage = true
  constructor() {
    super('coordinator_draining', 'the coordinator is shutting down; retry on another instance or shortly')
  }
}

/** The coordinator has no buffer memory left for another held answer. */
export class CoordinatorBusyError extends CoordinatorError {
  override name = 'CoordinatorBusyError'
  override readonly exposeMessage = true
  constructor() {
    super('coordinator_busy', 'the coordinator is at its limit for buffered answers; retry shortly')
  }
}

export class ProviderTimeoutError extends CoordinatorError {
  override name = 'ProviderTimeoutError'
  override readonly exposeMessage = true
  constructor() {
    super('provider_timeout', 'the provider did not answer in time')
  }
}

export class ContextLengthExceededError extends CoordinatorError {
  override name = 'ContextLengthExceededError'
  constructor() {
    super('context_length_exceeded', "the request exceeds the provider's context length")
  }
}

/** Every stable code that reaches HTTP clients, and its status. specs/errors.md lists them all. */
export const httpStatus: Readonly<Record<string, number>> = {
  COORD_UNAUTHORIZED: 401,
  COORD_NOT_FOUND: 404,
  COORD_METHOD_NOT_ALLOWED: 405,
  request_too_large: 413,
  invalid_json: 400,
  invalid_request: 400,
  model_not_found: 404,
  no_provider_available: 503,
  provider_unavailable: 503,
  provider_error: 502,
  provider_timeout: 504,
  coordinator_busy: 503,
  coordinator_draining: 503,
  context_length_exceeded: 400,
  COORD_TOKEN_ACTIVE_EXISTS: 409,
  COORD_TOKEN_PREFIX_AMBIGUOUS: 409,
  COORD_TOKEN_PREFIX_INVALID: 400,
  COORD_PROVIDER_ID_INVALID: 400,
  COORD_TOKEN_NOT_FOUND: 404,
  COORD_IDENTITY_NOT_PINNED: 404,
  COORD_STORE_UNAVAILABLE: 503,
  COORD_BAD_REQUEST: 400,
}

export interface PublicError {
  status: number
  body: { error: { message: string; type: string; code: string } }
}

/** The only translation from an error to what a client sees. Unknown errors reveal nothing. */
export function toPublicError(err: unknown): PublicError {
  if (err instanceof CoordinatorError && err.code in httpStatus) {
    const status = httpStatus[err.code] as number
    const message = status >= 500 && !err.exposeMessage ? 'service temporarily unavailable' : err.message
    return { status, body: { error: { message, type: errorType(status), code: err.code } } }
  }
  return {
    status: 500,
    body: { error: { message: 'internal error', type: 'server_error', code: 'COORD_INTERNAL' } },
  }
}

function errorType(status: number): string {
  if (status === 401) return 'authentication_error'
  if (status >= 500) return 'server_error'
  return 'invalid_request_error'
}
