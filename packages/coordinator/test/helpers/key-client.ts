import {
  SUBPROTOCOL_V2,
  authInit,
  authProof,
  generateIdentityKey,
  provedBytes,
  sha256Hex,
  signProof,
  type AuthChallengeMessage,
  type IdentityIntent,
  type IdentityKeyPair,
} from '@poolcoord/protocol'
import { ProviderClient, type Closed, type HelloAck } from './provider-client.js'

export { generateIdentityKey, type IdentityKeyPair }

export interface KeyHandshake {
  client: ProviderClient
  /** The challenge, or the close that came instead. */
  challenge: AuthChallengeMessage | null
  /** The auth_init frame exactly as sent. */
  initText: string
}

export interface InitOptions {
  token?: string
  intent: IdentityIntent
  next?: IdentityKeyPair
  /** Fields to override in auth_init, after the key fields. */
  extra?: Record<string, unknown>
  /** Default poolcoord.v2; '' offers none. */
  subprotocol?: string
}

/** A v2 provider over a real ws client, up to the challenge. Tests then prove() with the knobs an attack needs. */
export async function openKeyHandshake(wsUrl: string, providerId: string, key: IdentityKeyPair, o: InitOptions): Promise<KeyHandshake> {
  const sub = o.subprotocol ?? SUBPROTOCOL_V2
  const client = await ProviderClient.connect(wsUrl, { token: o.token, ...(sub === '' ? {} : { subprotocol: sub }) })
  const init = authInit(
    { provider_id: providerId, hostname: `${providerId}.local`, model_id: 'llama-3-8b', binary_version: '2.0.0', max_concurrency: 2, max_context_tokens: 8192 },
    { identity_key: key.publicKey, intent: o.intent, next_identity_key: o.next?.publicKey ?? null },
  )
  const initText = client.sendRaw({ ...init, ...o.extra })
  const first = await client.outcome()
  const challenge =
    first.ack !== undefined && (first.ack as unknown as { type: string }).type === 'auth_challenge' ? (first.ack as unknown as AuthChallengeMessage) : null
  return { client, challenge, initText }
}

export interface ProofOptions {
  /** Sign with this key instead of the one in auth_init. */
  signer?: IdentityKeyPair
  /** Sign these init bytes instead of the ones sent. */
  initText?: string
  origin?: string
  challengeId?: string
  providerId?: string
}

/** The proof for `h`'s challenge, signed as the spec says unless a knob changes one input. */
export function proofFor(
  h: KeyHandshake,
  providerId: string,
  key: IdentityKeyPair,
  intent: IdentityIntent,
  next: IdentityKeyPair | null,
  o: ProofOptions = {},
) {
  const c = h.challenge as AuthChallengeMessage
  const bytes = provedBytes({
    origin: o.origin ?? c.origin,
    intent,
    providerId: o.providerId ?? providerId,
    identityKey: key.publicKey,
    nextIdentityKey: next?.publicKey ?? null,
    challengeId: c.challenge_id,
    nonce: c.nonce,
    issuedAt: c.issued_at,
    initSha256: sha256Hex(o.initText ?? h.initText),
  })
  return authProof(o.challengeId ?? c.challenge_id, signProof(o.signer ?? key, bytes))
}

export type KeyOutcome =
  { ack: HelloAck; close?: undefined; challenge: AuthChallengeMessage | null } | { close: Closed; ack?: undefined; challenge: AuthChallengeMessage | null }

/** The whole v2 handshake with an honest proof. The socket stays open if admitted. */
export async function keyJoin(wsUrl: string, providerId: string, key: IdentityKeyPair, o: InitOptions): Promise<{ client: ProviderClient } & KeyOutcome> {
  const h = await openKeyHandshake(wsUrl, providerId, key, o)
  if (h.challenge === null) return { client: h.client, close: await h.client.closed, challenge: null }
  h.client.send(proofFor(h, providerId, key, o.intent, o.next ?? null))
  const out = await h.client.outcome()
  return { client: h.client, challenge: h.challenge, ...(out.ack !== undefined ? { ack: out.ack } : { close: out.close }) }
}
