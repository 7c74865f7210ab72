/**
 * Every error the coordinator raises on purpose carries a stable `code`. This module is the one
 * place that maps codes to HTTP statuses; close codes for the provider socket live in
 * protocol/close-codes.ts. Anything that is not a CoordinatorError is internal: clients see only
 * a generic message and COORD_INTERNAL.
 */
export class CoordinatorError extends Error {
  override name = 'CoordinatorError'
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

/** The token store could not answer. Callers fail closed. */
export class StoreUnavailableError extends CoordinatorError {
  override name = 'StoreUnavailableError'
  constructor(cause: unknown) {
    super('COORD_STORE_UNAVAILABLE', 'token store unavailable', { cause })
  }
}

export class InvalidProviderIdError extends CoordinatorError {
  override name = 'InvalidProviderIdError'
  constructor() {
    super('COORD_PROVIDER_ID_INVALID', 'provider_id must be 1-64 characters of [A-Za-z0-9_.-]')
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

const httpStatus: Record<string, number> = {
  COORD_UNAUTHORIZED: 401,
  COORD_NOT_FOUND: 404,
  COORD_TOKEN_ACTIVE_EXISTS: 409,
  COORD_TOKEN_PREFIX_AMBIGUOUS: 409,
  COORD_TOKEN_PREFIX_INVALID: 400,
  COORD_PROVIDER_ID_INVALID: 400,
  COORD_TOKEN_NOT_FOUND: 404,
  COORD_STORE_UNAVAILABLE: 503,
}

export interface PublicError {
  status: number
  body: { error: { message: string; type: string; code: string } }
}

/** The only translation from an error to what a client sees. Unknown errors reveal nothing. */
export function toPublicError(err: unknown): PublicError {
  if (err instanceof CoordinatorError && err.code in httpStatus) {
    const status = httpStatus[err.code] as number
    const message = status >= 500 ? 'service temporarily unavailable' : err.message
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
