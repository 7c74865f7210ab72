import { StoreUnavailableError } from '../errors.js'

/**
 * Runs one store operation, bounded on the client side too: a hung store fails closed within
 * `timeoutMs`. Every failure becomes StoreUnavailableError, except what `named` maps to an error
 * of its own (a named constraint the caller decides on).
 */
const noop = (): void => undefined

export async function storeCall<T>(timeoutMs: number, fn: () => Promise<T>, named?: (err: unknown) => Error | null): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const work = fn()
  // A late result or error of the abandoned operation is dropped, never unhandled.
  work.catch(() => undefined)
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('store operation timed out')), timeoutMs)
  })
  try {
    return await Promise.race([work, timeout])
  } catch (err) {
    throw named?.(err) ?? new StoreUnavailableError(err, work.then(noop, noop))
  } finally {
    clearTimeout(timer)
  }
}
