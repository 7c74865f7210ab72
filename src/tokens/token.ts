import { randomBytes } from 'node:crypto'
import { sha256 } from '@noble/hashes/sha2.js'
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils.js'

/**
 * A provider token is 32 random bytes as 64 lowercase hex characters. Only its SHA-256 is
 * stored; its first 12 characters are the operator-facing prefix. The cleartext exists only
 * between minting and the ack frame (or the CLI's one-time print), and between the upgrade
 * header and hashToken().
 */
export const TOKEN_RE = /^[0-9a-f]{64}$/
export const PREFIX_LENGTH = 12
/** What an operator may name a token by: 6 to PREFIX_LENGTH lowercase hex characters. */
export const TOKEN_PREFIX_RE = /^[0-9a-f]{6,12}$/
export const PROVIDER_ID_RE = /^[A-Za-z0-9_.-]{1,64}$/

export function generateToken(): string {
  return randomBytes(32).toString('hex')
}

export function hashToken(token: string): string {
  return bytesToHex(sha256(utf8ToBytes(token)))
}

export function tokenPrefix(token: string): string {
  return token.slice(0, PREFIX_LENGTH)
}

export type BearerParse =
  | { kind: 'absent' }
  | { kind: 'malformed' }
  | { kind: 'token'; token: string }

/** Reads `Authorization: Bearer <64 hex>`. Anything else that is present is malformed. */
export function parseBearer(header: string | string[] | undefined): BearerParse {
  if (header === undefined) return { kind: 'absent' }
  if (Array.isArray(header) || header.length > 256) return { kind: 'malformed' }
  const m = /^Bearer ([0-9a-f]{64})$/.exec(header.trim())
  return m ? { kind: 'token', token: m[1] as string } : { kind: 'malformed' }
}
