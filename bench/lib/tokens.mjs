import { createHash } from 'node:crypto'
import { identityKeyFromSeed } from '@poolcoord/protocol'
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

/** The Ed25519 seed (32 bytes, base64url) of provider i's identity key: derived like its token. */
export function benchKeySeed(i) {
  return createHash('sha256').update(`poolcoord-bench-key-${i}`).digest('base64url')
}

/** The public key pinned for provider i, in its wire form. */
export function benchIdentityKey(i) {
  return identityKeyFromSeed(benchKeySeed(i)).publicKey
}
