import { readFileSync } from 'node:fs'
import t from 'tap'
import { ed25519 } from '@noble/curves/ed25519.js'
import { identityKeyFromSeed, keyFingerprint, provedBytes, sha256Hex, signProof, verifyProof, type IdentityIntent } from '../src/index.js'

/**
 * The golden vector of specs/protocol.md §2.4: a fixed key, nonce and frame give fixed signed
 * bytes and a fixed signature (Ed25519 is deterministic). Checked against our code (node:crypto),
 * against an independent implementation (@noble/curves), and against the spec's own text, so
 * that another implementation can test itself against the same numbers.
 */
interface Vector {
  seed: string
  public_key: string
  origin: string
  intent: IdentityIntent
  provider_id: string
  next_key: string
  challenge_id: string
  nonce: string
  issued_at: number
  init_frame: string
  init_sha256: string
  signed_text: string
  signature: string
}

const v = JSON.parse(readFileSync(new URL('./golden-vector.json', import.meta.url), 'utf8')) as Vector
const spec = readFileSync(new URL('../../../specs/protocol.md', import.meta.url), 'utf8')
const raw = (b64: string) => new Uint8Array(Buffer.from(b64, 'base64url'))

t.test('the fixed inputs give the fixed signed bytes', async (t) => {
  t.equal(identityKeyFromSeed(v.seed).publicKey, v.public_key, 'public key from the seed')
  t.equal(sha256Hex(v.init_frame), v.init_sha256, 'init_sha256 over the frame text as sent')
  const bytes = provedBytes({
    origin: v.origin,
    intent: v.intent,
    providerId: v.provider_id,
    identityKey: v.public_key,
    nextIdentityKey: v.next_key === '-' ? null : v.next_key,
    challengeId: v.challenge_id,
    nonce: v.nonce,
    issuedAt: v.issued_at,
    initSha256: v.init_sha256,
  })
  t.equal(bytes.toString('utf8'), v.signed_text)
  t.ok(v.signed_text.endsWith('\n') && v.signed_text.startsWith('poolcoord/provider-identity/v2\n'))
})

t.test('node:crypto and @noble/curves agree on the signature', async (t) => {
  const bytes = Buffer.from(v.signed_text, 'utf8')
  t.equal(signProof({ privateSeed: v.seed, publicKey: v.public_key }, bytes), v.signature, 'node:crypto signs the fixed signature')
  t.ok(await verifyProof(v.public_key, bytes, v.signature), 'node:crypto verifies it')
  t.equal(Buffer.from(ed25519.sign(bytes, raw(v.seed))).toString('base64url'), v.signature, '@noble/curves signs the same signature')
  t.ok(ed25519.verify(raw(v.signature), bytes, raw(v.public_key)), '@noble/curves verifies it')
  t.equal(Buffer.from(ed25519.getPublicKey(raw(v.seed))).toString('base64url'), v.public_key, '@noble/curves derives the same public key')
  const flipped = Buffer.from(bytes)
  flipped[flipped.length - 2] ^= 1
  t.notOk(await verifyProof(v.public_key, flipped, v.signature), 'one flipped bit fails in node:crypto')
  t.notOk(ed25519.verify(raw(v.signature), flipped, raw(v.public_key)), 'and in @noble/curves')
})

t.test('the spec prints the same vector', async (t) => {
  for (const [name, value] of Object.entries(v)) {
    if (name === 'signed_text') continue
    t.ok(spec.includes(String(value)), `specs/protocol.md shows ${name}`)
  }
  t.ok(spec.includes(v.signed_text.trimEnd()), 'specs/protocol.md shows the signed lines')
  t.ok(spec.includes(keyFingerprint(v.public_key)), 'and the key fingerprint')
})
