import t from 'tap'
import { randomBytes, randomUUID } from 'node:crypto'
import {
  Close,
  authChallenge,
  authInit,
  authProof,
  generateIdentityKey,
  identityKeyFromSeed,
  keyFingerprint,
  parseAuthChallenge,
  parseAuthInit,
  parseAuthProof,
  parseHelloAck,
  provedBytes,
  signProof,
  verifyProof,
  withField,
} from '../src/index.js'

const fields = { provider_id: 'mac-1', hostname: 'mac.local', model_id: 'llama', binary_version: '2.0.0', max_concurrency: 2, max_context_tokens: 8192 }
const key = generateIdentityKey()
const next = generateIdentityKey()
const json = (v: unknown) => JSON.parse(JSON.stringify(v)) as Record<string, unknown>

t.test('auth_init: valid intents, next key only with rotate', async (t) => {
  for (const intent of ['enroll', 'connect', 'recover'] as const) {
    t.strictSame(parseAuthInit(json(authInit(fields, { identity_key: key.publicKey, intent }))), {
      ok: true,
      value: authInit(fields, { identity_key: key.publicKey, intent }),
    })
  }
  const rotate = authInit(fields, { identity_key: key.publicKey, intent: 'rotate', next_identity_key: next.publicKey })
  t.strictSame(parseAuthInit(json(rotate)), { ok: true, value: rotate })
  const bad = (over: Record<string, unknown>) => parseAuthInit({ ...json(authInit(fields, { identity_key: key.publicKey, intent: 'connect' })), ...over })
  t.strictSame(bad({ intent: 'rotate' }), { ok: false, close: withField(Close.invalidHello, 'next_identity_key') }, 'rotate needs a next key')
  t.strictSame(
    bad({ intent: 'rotate', next_identity_key: key.publicKey }),
    { ok: false, close: withField(Close.invalidHello, 'next_identity_key') },
    'next differs from current',
  )
  t.strictSame(
    bad({ next_identity_key: next.publicKey }),
    { ok: false, close: withField(Close.invalidHello, 'next_identity_key') },
    'a next key without rotate',
  )
  t.strictSame(bad({ intent: 'steal' }), { ok: false, close: withField(Close.invalidHello, 'intent') })
  t.strictSame(bad({ version: 1 }), { ok: false, close: Close.unsupportedVersion })
  t.strictSame(bad({ version: '2' }), { ok: false, close: withField(Close.invalidHello, 'version') })
  t.strictSame(bad({ type: 'hello' }), { ok: false, close: Close.notHello })
  t.strictSame(bad({ provider_id: 'a\nb' }), { ok: false, close: withField(Close.invalidHello, 'provider_id') }, 'no newline can enter the signed lines')
  // Keys: exactly 32 bytes in canonical unpadded base64url; anything else would give one key two spellings.
  const canonicalLast = key.publicKey.slice(0, 42) + 'B'
  for (const k of [key.publicKey + '=', key.publicKey.slice(1), canonicalLast, key.publicKey.replace(/.$/, '+'), `${key.publicKey}\n`, 42]) {
    t.strictSame(bad({ identity_key: k }), { ok: false, close: withField(Close.invalidHello, 'identity_key') }, `key ${JSON.stringify(k)}`)
  }
})

t.test('auth_proof and auth_challenge parse only their exact shapes', async (t) => {
  const id = randomUUID()
  const sig = 'A'.repeat(86)
  t.strictSame(parseAuthProof(json(authProof(id, sig))), { ok: true, value: authProof(id, sig) })
  t.strictSame(parseAuthProof(null), { ok: false, close: withField(Close.invalidFrame, 'type') })
  t.strictSame(parseAuthProof({ type: 'auth_proof', challenge_id: id.toUpperCase(), signature: sig }), {
    ok: false,
    close: withField(Close.invalidFrame, 'challenge_id'),
  })
  t.strictSame(parseAuthProof({ type: 'auth_proof', challenge_id: id, signature: sig.slice(1) }), {
    ok: false,
    close: withField(Close.invalidFrame, 'signature'),
  })
  t.strictSame(
    parseAuthProof({ type: 'auth_proof', challenge_id: id, signature: 'B'.repeat(86) }),
    { ok: false, close: withField(Close.invalidFrame, 'signature') },
    'non-canonical last character',
  )
  const c = authChallenge({
    challenge_id: id,
    nonce: randomBytes(32).toString('base64url'),
    origin: 'wss://pool.example.com',
    issued_at: 1767225600000,
    expires_in_ms: 30000,
    key_state: 'pinned',
  })
  t.strictSame(parseAuthChallenge(json(c)), { ok: true, value: c })
  for (const [field, v] of [
    ['issued_at', 1.5],
    ['origin', 'wss://pool.example.com/path'],
    ['origin', 'javascript:alert(1)'],
    ['nonce', 'short'],
    ['key_state', 'maybe'],
    ['expires_in_ms', 0],
  ] as const) {
    t.strictSame(parseAuthChallenge({ ...json(c), [field]: v }), { ok: false, close: withField(Close.invalidFrame, field) }, `${field} ${v}`)
  }
  const ack = { type: 'hello_ack', coordinator_version: 1, assigned_id: 'a', heartbeat_interval_s: 30, auth_state: 'key_proven', identity_generation: 2 }
  t.match(parseHelloAck(ack), { ok: true, value: { auth_state: 'key_proven', identity_generation: 2 } })
  t.strictSame(parseHelloAck({ ...ack, identity_generation: 0 }), { ok: false, close: withField(Close.invalidFrame, 'identity_generation') })
})

t.test('sign and verify round-trip; any change to the signed lines fails', async (t) => {
  const f = {
    origin: 'ws://127.0.0.1:8080',
    intent: 'recover' as const,
    providerId: 'mac-1',
    identityKey: key.publicKey,
    nextIdentityKey: null,
    challengeId: randomUUID(),
    nonce: randomBytes(32).toString('base64url'),
    issuedAt: 1767225600000,
    initSha256: 'a'.repeat(64),
  }
  const sig = signProof(key, provedBytes(f))
  t.ok(await verifyProof(key.publicKey, provedBytes(f), sig))
  t.strictSame(identityKeyFromSeed(key.privateSeed), key, 'the public key follows from the seed')
  t.match(keyFingerprint(key.publicKey), /^[0-9a-f]{12}$/)
  for (const [name, over] of [
    ['origin', { origin: 'wss://evil.example.com' }],
    ['intent', { intent: 'connect' }],
    ['provider id', { providerId: 'mac-2' }],
    ['next key', { nextIdentityKey: next.publicKey }],
    ['challenge', { challengeId: randomUUID() }],
    ['nonce', { nonce: randomBytes(32).toString('base64url') }],
    ['issued_at', { issuedAt: 1767225600001 }],
    ['init digest', { initSha256: 'b'.repeat(64) }],
  ] as const) {
    t.notOk(await verifyProof(key.publicKey, provedBytes({ ...f, ...over }), sig), `a different ${name} does not verify`)
  }
  t.notOk(await verifyProof(next.publicKey, provedBytes(f), sig), 'another key does not verify')
  t.notOk(await verifyProof(key.publicKey, provedBytes(f), 'A'.repeat(86)), 'a zero signature does not verify')
  t.notOk(await verifyProof('A'.repeat(43), provedBytes(f), sig), 'a degenerate key never verifies, never throws')
})

t.test('weak keys are refused: small-order points and non-canonical encodings', async (t) => {
  const { isWeakIdentityKey, verifyProof: verify } = await import('../src/index.js')
  const b64 = (hex: string) => Buffer.from(hex, 'hex').toString('base64url')
  const identity = b64('01'.padEnd(64, '0'))
  // The attack: the identity point "verifies" R = identity, S = 0 for any message.
  const forged = b64('01'.padEnd(64, '0') + '0'.repeat(64))
  t.ok(await verify(identity, Buffer.from('any message at all'), forged), 'node:crypto accepts the forgery for this key, so the key must never be pinned')
  for (const hex of [
    '01'.padEnd(64, '0'),
    'ec' + 'ff'.repeat(30) + '7f',
    '0'.repeat(64),
    '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05',
    'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa',
    'ee' + 'ff'.repeat(30) + '7f',
  ]) {
    t.ok(isWeakIdentityKey(b64(hex)), `weak: ${hex.slice(0, 8)}…`)
    const init = { ...json(authInit(fields, { identity_key: key.publicKey, intent: 'enroll' })), identity_key: b64(hex) }
    t.strictSame(parseAuthInit(init), { ok: false, close: withField(Close.invalidHello, 'identity_key') })
  }
  for (let i = 0; i < 50; i++) t.notOk(isWeakIdentityKey(generateIdentityKey().publicKey))
})
