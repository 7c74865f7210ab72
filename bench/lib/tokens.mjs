import { createHash } from 'node:crypto'
export { hashToken } from '@poolcoord/protocol'

/**
 * Bench tokens are derived from their index, so every process (seeder, providers, the raw
 * Postgres baseline) can name token i without passing 20,000 secrets around.
 */
export function benchToken(i) {
  return createHash('sha256').update(`poolcoord-bench-token-${i}`).digest('hex')
}

export function seededProviderId(i) {
  return `bench-${i}`
}
