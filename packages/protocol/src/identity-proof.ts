/**
 * Provider identity v2 (specs/protocol.md §2.4): the bytes a provider signs with its Ed25519 key,
 * and the key and signature encodings. Both sides build the signed bytes with provedBytes(), so
 * that what the agent signs and what the coordinator verifies cannot drift apart.
 *
 * Why lines and not canonical JSON: every field has a charset without `\n` (checked by the
 * parsers before a field gets here), so `name=value\n` lines are unambiguous and any language can
 * produce them byte for byte. node:crypto has no Ed25519ctx, so the first line is the domain
 * separation: a signature made for anything else never verifies here.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto'

export const PROOF_DOMAIN = 'poolcoord/provider-identity/v2'

/** The WebSocket subprotocol a v2 agent offers and a v2 coordinator selects. */
export const SUBPROTOCOL_V2 = 'poolcoord.v2'

export const IDENTITY_INTENTS = ['enroll', 'connect', 'recover', 'rotate'] as const
export type IdentityIntent = (typeof IDENTITY_INTENTS)[number]

/** A raw 32-byte Ed25519 public key, base64url without padding: exactly 43 characters. */
export const IDENTITY_KEY_RE = /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/
/** A 64-byte signature, base64url without padding: exactly 86 characters. */
export const SIGNATURE_RE = /^[A-Za-z0-9_-]{85}[AQgw]$/
/** A 32-byte nonce, base64url without padding. */
export const NONCE_RE = IDENTITY_KEY_RE
export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
/** An origin as the challenge names it: scheme, host and optional port, nothing else. */
export const ORIGIN_RE = /^(wss?|https?):\/\/[A-Za-z0-9.\-[\]:]{1,253}$/

export interface ProofFields {
  origin: string
  intent: IdentityIntent
  providerId: string
  identityKey: string
  nextIdentityKey: string | null
  challengeId: string
  nonce: string
  issuedAt: number
  /** Lowercase hex SHA-256 of the auth_init frame's bytes exactly as sent. */
  initSha256: string
}

/** The exact bytes an identity proof signs. */
export function provedBytes(f: ProofFields): Buffer {
  const lines = [
    PROOF_DOMAIN,
    `origin=${f.origin}`,
    `intent=${f.intent}`,
    `provider_id=${f.providerId}`,
    `key=${f.identityKey}`,
    `next_key=${f.nextIdentityKey ?? '-'}`,
    `challenge_id=${f.challengeId}`,
    `nonce=${f.nonce}`,
    `issued_at=${String(f.issuedAt)}`,
    `init_sha256=${f.initSha256}`,
  ]
  return Buffer.from(`${lines.join('\n')}\n`, 'utf8')
}

export function sha256Hex(bytes: Buffer | string): string {
  return createHash('sha256').update(bytes).digest('hex')
}

/** What an operator sees of a key: the first 12 hex characters of SHA-256 over its 32 raw bytes. */
export function keyFingerprint(identityKey: string): string {
  return sha256Hex(Buffer.from(identityKey, 'base64url')).slice(0, 12)
}

/**
 * The encodings of Ed25519's small-order points (orders 1, 2, 4 and 8), with and without the
 * sign bit. A key among them "verifies" forged signatures (the identity point accepts R =
 * identity, S = 0 for any message), so whoever pinned it could be impersonated by anyone.
 */
const SMALL_ORDER = new Set([
  '0100000000000000000000000000000000000000000000000000000000000000',
  '0100000000000000000000000000000000000000000000000000000000000080',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff',
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0000000000000000000000000000000000000000000000000000000000000080',
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05',
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85',
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a',
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa',
])

/**
 * A key no provider may pin: a small-order point, or a y coordinate of p = 2^255 - 19 or more
 * (a non-canonical spelling of another point). Honest keys (generateIdentityKey) never are.
 */
export function isWeakIdentityKey(identityKey: string): boolean {
  const b = Buffer.from(identityKey, 'base64url')
  if (b.length !== 32 || SMALL_ORDER.has(b.toString('hex'))) return true
  // y >= p: the top byte (sign bit cleared) is 0x7f, bytes 30..1 are 0xff, byte 0 is 0xed or more.
  if ((b[31]! & 0x7f) !== 0x7f || b[0]! < 0xed) return false
  for (let i = 1; i < 31; i++) if (b[i] !== 0xff) return false
  return true
}

/** A public key object from the wire form; throws on a malformed key. */
export function publicKeyOf(identityKey: string): KeyObject {
  if (!IDENTITY_KEY_RE.test(identityKey)) throw new Error('malformed identity key')
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: identityKey }, format: 'jwk' })
}

/**
 * Verifies off the event loop (node:crypto's callback form runs on libuv's threadpool): the
 * proof is attacker-triggered work before admission. Never rejects; a malformed key or
 * signature is simply false.
 */
export function verifyProof(identityKey: string, bytes: Buffer, signature: string): Promise<boolean> {
  return new Promise((resolve) => {
    try {
      if (!SIGNATURE_RE.test(signature)) return resolve(false)
      verify(null, bytes, publicKeyOf(identityKey), Buffer.from(signature, 'base64url'), (err, ok) => resolve(err === null && ok === true))
    } catch {
      resolve(false)
    }
  })
}

/** A provider's key pair in the form the agent keeps: the 32-byte seed and the public key, base64url. */
export interface IdentityKeyPair {
  privateSeed: string
  publicKey: string
}

export function generateIdentityKey(): IdentityKeyPair {
  const { privateKey } = generateKeyPairSync('ed25519')
  const jwk = privateKey.export({ format: 'jwk' })
  return { privateSeed: jwk.d as string, publicKey: jwk.x as string }
}

/** The key pair of a 32-byte seed (base64url); throws when the seed is malformed. */
export function identityKeyFromSeed(privateSeed: string): IdentityKeyPair {
  if (!IDENTITY_KEY_RE.test(privateSeed)) throw new Error('malformed identity key seed')
  // PKCS#8 for Ed25519 is a fixed 16-byte prefix followed by the seed (RFC 8410).
  const der = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), Buffer.from(privateSeed, 'base64url')])
  const jwk = createPublicKey(createPrivateKey({ key: der, format: 'der', type: 'pkcs8' })).export({ format: 'jwk' })
  return { privateSeed, publicKey: jwk.x as string }
}

/**
 * Signs the proof bytes with the key pair; returns the signature in its wire form. The key is
 * imported as JWK from both halves, which is about ten times cheaper than from the seed alone
 * (PKCS#8 makes OpenSSL derive the public key again on every call).
 */
export function signProof(key: IdentityKeyPair, bytes: Buffer): string {
  const privateKey = createPrivateKey({ key: { kty: 'OKP', crv: 'Ed25519', d: key.privateSeed, x: key.publicKey }, format: 'jwk' })
  return sign(null, bytes, privateKey).toString('base64url')
}
