import { randomBytes } from 'node:crypto'
import { BEARER_RE } from '@poolcoord/protocol'

/**
 * Minting and reading provider tokens. The format, the stored digest (hashToken) and the
 * operator-facing prefix are wire facts and live in @poolcoord/protocol. The cleartext exists
 * only between minting and the ack frame (or the CLI's one-time print), and between the upgrade
 * header and hashToken().
 */
export function generateToken(): string {
  return randomBytes(32).toString('hex')
}

export type BearerParse = { kind: 'absent' } | { kind: 'malformed' } | { kind: 'token'; token: string }

/** Reads `Authorization: Bearer <64 hex>`. Anything else that is present is malformed. */
export function parseBearer(header: string | string[] | undefined): BearerParse {
  if (header === undefined) return { kind: 'absent' }
  if (Array.isArray(header) || header.length > 256) return { kind: 'malformed' }
  const m = BEARER_RE.exec(header.trim())
  return m ? { kind: 'token', token: m[1] as string } : { kind: 'malformed' }
}
