import { createHash, createHmac, timingSafeEqual } from 'node:crypto'

/**
 * Checks `Authorization: Bearer <operator key>` in constant time: both sides are hashed first,
 * so neither the length nor the content of the key leaks through timing. An empty key denies.
 */
export function createOperatorAuth(key: string): (header: string | undefined) => boolean {
  if (key.length === 0) throw new Error('operator key must not be empty')
  const expected = digest(key)
  return (header) => {
    if (typeof header !== 'string' || !header.startsWith('Bearer ')) return false
    const presented = header.slice('Bearer '.length).trim()
    if (presented.length === 0) return false
    return timingSafeEqual(digest(presented), expected)
  }
}

/** A client's challenge: 32 random bytes as 64 lowercase hex characters. */
export const PROOF_NONCE_RE = /^[0-9a-f]{64}$/

/**
 * Proof that a server holds the operator key, without revealing it: HMAC-SHA256 keyed with the
 * operator key over a fixed label and the client's nonce. coordinator-cli checks it before it
 * sends the key, so a process that took the coordinator's port while it was down never gets
 * the key. The label keeps these MACs from being anything but answers to this question.
 */
export function operatorProof(key: string, nonce: string): string {
  return createHmac('sha256', key).update(`poolcoord/operator-proof/v1\n${nonce}`).digest('hex')
}

/** Constant-time comparison of two proofs (hex strings). */
export function proofsEqual(a: string, b: string): boolean {
  return a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b))
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest()
}
