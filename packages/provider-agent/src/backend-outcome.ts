/**
 * What a backend's answer means for the end frame: the outcome table of backend-client.ts as
 * pure functions, so that the table can be tested without a network.
 */
import type { EndStatus } from '@poolcoord/protocol'

/** The backend is not there (refused, no such host, no route): the model is not loaded here, so the coordinator fails over. */
const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH'])

/** A request that failed before any answer, by its system error code. */
export function endStatusOfNetworkError(code: string | undefined): EndStatus {
  return code !== undefined && UNREACHABLE.has(code) ? 'error_model_not_loaded' : 'error_internal'
}

/** A status other than 2xx, with the body when it is a 400 (otherwise unused). */
export function endStatusOfHttp(status: number, body: string): EndStatus {
  if (status === 429 || status === 503) return 'error_queue_full'
  if (status === 404) return 'error_model_not_loaded'
  if (status === 400 && isContextExceeded(body)) return 'error_context_exceeded'
  return 'error_internal'
}

function isContextExceeded(body: string): boolean {
  try {
    const err = (JSON.parse(body) as { error?: { code?: unknown } } | null)?.error
    return err?.code === 'context_length_exceeded'
  } catch {
    // Not JSON: an ordinary 400.
    return false
  }
}
