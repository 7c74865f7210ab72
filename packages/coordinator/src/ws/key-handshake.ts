import { randomBytes, randomUUID } from 'node:crypto'
import {
  CHALLENGE_TTL_MS,
  authChallenge,
  provedBytes,
  sha256Hex,
  verifyProof,
  type AuthChallengeMessage,
  type AuthInitMessage,
  type AuthProofMessage,
  type KeyState,
} from '@poolcoord/protocol'

/**
 * One connection's identity-v2 challenge (specs/protocol.md §2.4). Anti-replay needs no shared
 * store: the nonce is fresh per connection, lives only in this object, and is consumed by the
 * first proof, valid or not (`check` may be called once). A proof captured elsewhere names a
 * challenge this connection never issued; a proof made for this challenge is useless on any
 * other connection. Time is the coordinator's clock only.
 */
export class KeyChallenge {
  readonly id = randomUUID()
  readonly nonce = randomBytes(32).toString('base64url')
  private readonly initSha256: string
  private used = false
  /** An integer, signed as its decimal digits (the clock may have a fraction). */
  readonly issuedAt: number

  constructor(
    readonly init: AuthInitMessage,
    /** The auth_init frame's bytes exactly as received: the proof signs their digest. */
    initBytes: Buffer,
    private readonly origin: string,
    now: number,
    /** How long the proof may take: the admission deadline's remainder, at most CHALLENGE_TTL_MS. */
    private readonly ttlMs: number = CHALLENGE_TTL_MS,
  ) {
    this.issuedAt = Math.floor(now)
    this.initSha256 = sha256Hex(initBytes)
  }

  frame(keyState: KeyState): AuthChallengeMessage {
    return authChallenge({
      challenge_id: this.id,
      nonce: this.nonce,
      origin: this.origin,
      issued_at: this.issuedAt,
      expires_in_ms: this.ttlMs,
      key_state: keyState,
    })
  }

  /** Checks the one proof this challenge accepts. */
  async check(proof: AuthProofMessage, now: number): Promise<'ok' | 'reused' | 'wrong_challenge' | 'expired' | 'bad_signature'> {
    if (this.used) return 'reused'
    this.used = true
    if (proof.challenge_id !== this.id) return 'wrong_challenge'
    if (now - this.issuedAt > this.ttlMs || now < this.issuedAt) return 'expired'
    const bytes = provedBytes({
      origin: this.origin,
      intent: this.init.intent,
      providerId: this.init.provider_id,
      identityKey: this.init.identity_key,
      nextIdentityKey: this.init.next_identity_key ?? null,
      challengeId: this.id,
      nonce: this.nonce,
      issuedAt: this.issuedAt,
      initSha256: this.initSha256,
    })
    return (await verifyProof(this.init.identity_key, bytes, proof.signature)) ? 'ok' : 'bad_signature'
  }
}
