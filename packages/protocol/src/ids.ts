import { createHash } from 'node:crypto'

/**
 * Identifiers and credentials as they appear on the wire (specs/protocol.md §1.1, §2.1). Both
 * sides and every tool that seeds a token store use these, so a token or id accepted by one is
 * accepted by all.
 */

/**
 * A provider_id: 1–64 characters of `[A-Za-z0-9_.-]`, not dots alone. `.` and `..` are refused
 * because URL parsers fold them as path segments: /admin/providers/../cordon would reach
 * /admin/cordon, so such a provider could never be cordoned, drained or kicked by URL.
 */
export const PROVIDER_ID_RE = /^(?!\.+$)[A-Za-z0-9_.-]{1,64}$/

/** A provider token: 32 random bytes as 64 lowercase hex characters. */
export const TOKEN_RE = /^[0-9a-f]{64}$/

/** How many leading characters of a token an operator sees. */
export const TOKEN_PREFIX_LENGTH = 12

/** What an operator may name a token by: 6 to TOKEN_PREFIX_LENGTH lowercase hex characters. */
export const TOKEN_PREFIX_RE = /^[0-9a-f]{6,12}$/

/** The only accepted carrier of a token: `Authorization: Bearer <token>`. */
export const BEARER_RE = /^Bearer ([0-9a-f]{64})$/

export function tokenPrefix(token: string): string {
  return token.slice(0, TOKEN_PREFIX_LENGTH)
}

/** The digest a token store keeps instead of the token: lowercase hex SHA-256 of its ASCII. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex')
}

export function authorizationHeader(token: string): string {
  return `Bearer ${token}`
}
