/**
 * The agent's identity key (identity v2, specs/provider-agent.md §3): an Ed25519 key per
 * (coordinator URL, provider id), kept beside the token with the same rules (state-file.ts:
 * atomic, link-safe, 0600, moved aside when corrupt). A next key is written here before the
 * agent announces it, so a crash between the two can only repeat the announcement, never lose
 * the key the coordinator now expects.
 */
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { IDENTITY_KEY_RE, identityKeyFromSeed, type IdentityKeyPair } from '@poolcoord/protocol'

export interface IdentityKeyState {
  coordinatorUrl: string
  providerId: string
  current: IdentityKeyPair
  /** Written by `rotate-key`, announced at the next connection, promoted once the coordinator confirms. */
  next: IdentityKeyPair | null
  /** The coordinator admitted this key (key_proven) at least once: without a token, recover instead of enroll. */
  enrolled: boolean
}

export function identityKeyPath(dir: string, coordinatorUrl: string, providerId: string): string {
  const key = createHash('sha256').update(`${coordinatorUrl}\n${providerId}`).digest('hex').slice(0, 32)
  return join(dir, `identity-key-${key}.json`)
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function pair(seed: unknown): IdentityKeyPair | null {
  if (typeof seed !== 'string' || !IDENTITY_KEY_RE.test(seed)) return null
  try {
    return identityKeyFromSeed(seed)
  } catch {
    return null
  }
}

/** A validator for readStateFile: the key file of exactly this URL and id. */
export function identityKeyValidator(coordinatorUrl: string, providerId: string): (v: unknown) => IdentityKeyState | string {
  return (v) => {
    if (!isRecord(v) || v.version !== 1) return 'is not a version-1 identity key file'
    if (v.coordinator_url !== coordinatorUrl || v.provider_id !== providerId) return 'belongs to another coordinator URL or provider id'
    const current = pair(v.private_key)
    if (current === null) return 'holds no well-formed key'
    const next = v.next_private_key === undefined || v.next_private_key === null ? null : pair(v.next_private_key)
    if (next === undefined || (v.next_private_key !== undefined && v.next_private_key !== null && next === null)) return 'holds a malformed next key'
    return { coordinatorUrl, providerId, current, next, enrolled: v.enrolled === true }
  }
}

/** Only the seeds are stored: each public key follows from its seed. */
export function serializeIdentityKey(s: IdentityKeyState, now: Date): string {
  return `${JSON.stringify(
    {
      version: 1,
      coordinator_url: s.coordinatorUrl,
      provider_id: s.providerId,
      private_key: s.current.privateSeed,
      next_private_key: s.next?.privateSeed ?? null,
      enrolled: s.enrolled,
      saved_at: now.toISOString(),
    },
    null,
    2,
  )}\n`
}
