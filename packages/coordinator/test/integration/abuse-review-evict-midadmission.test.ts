import t from 'tap'
import WebSocket from 'ws'
import { SUBPROTOCOL_V2, authInit, type AuthChallengeMessage } from '@poolcoord/protocol'
import { generateIdentityKey, proofFor, type KeyHandshake } from '../helpers/key-client.js'
import { ProviderClient } from '../helpers/provider-client.js'
import { startTestService } from '../helpers/service.js'

// Review of the fair pre-auth shares (ws/pending-limiter.ts, specs/protocol.md §1.3): when every
// slot is taken, an upgrade from a smaller prefix takes the *oldest* slot of the largest prefix,
// whatever that connection is doing. A flood that shares a prefix with a provider (a cloud /24,
// a carrier-grade NAT range) keeps its own connections young by reopening them, so the oldest slot
// of that prefix is the provider's: a connection that has sent a valid auth_init and is answering
// its challenge, i.e. mid-admission, not one of the silent connections the eviction is meant for.
// The flood then "displaces" the provider, not itself.

function silent(wsUrl: string, from: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl, { localAddress: from, perMessageDeflate: false })
    ws.on('error', () => undefined)
    ws.once('open', () => resolve(ws))
    ws.once('unexpected-response', () => reject(new Error(`refused from ${from}`)))
  })
}

t.test("attack: a flood sharing a provider's /24 gets the provider's mid-handshake connection cut, not its own silent ones", async (t) => {
  const s = await startTestService(t, { limits: { maxPendingConnections: 16, maxPendingPerIp: 8 } })
  const flood: WebSocket[] = []
  t.teardown(() => flood.forEach((ws) => ws.terminate()))

  // The provider, from 127.0.1.1: auth_init sent, challenge received, its proof on the way (an RTT).
  const key = generateIdentityKey()
  const client = await ProviderClient.connect(s.wsUrl, { subprotocol: SUBPROTOCOL_V2, localAddress: '127.0.1.1' })
  t.teardown(() => client.ws.terminate())
  const init = authInit(
    { provider_id: 'victim-1', hostname: 'victim-1.local', model_id: 'llama-3-8b', binary_version: '2.0.0', max_concurrency: 2, max_context_tokens: 8192 },
    { identity_key: key.publicKey, intent: 'enroll', next_identity_key: null },
  )
  const initText = client.sendRaw(init)
  const first = await client.outcome()
  const h: KeyHandshake = { client, challenge: first.ack as unknown as AuthChallengeMessage, initText }
  t.equal((first.ack as unknown as { type: string } | undefined)?.type, 'auth_challenge', 'the provider is mid-handshake')

  // The flood: 8 silent connections in the provider's /24 (opened after it: younger), 7 in another /24.
  for (let i = 0; i < 8; i++) flood.push(await silent(s.wsUrl, '127.0.1.2'))
  for (let i = 0; i < 7; i++) flood.push(await silent(s.wsUrl, '127.0.2.1'))
  // Every slot is taken (16). One more from the smaller prefix evicts the oldest of 127.0.1.0/24.
  flood.push(await silent(s.wsUrl, '127.0.2.2'))

  client.send(proofFor(h, 'victim-1', key, 'enroll', null))
  const out = await client.outcome()
  t.equal(
    out.ack?.auth_state,
    'key_proven',
    `the provider that was answering its challenge is admitted (got ${JSON.stringify(out.close ?? out.ack)}); a silent flood connection should have given way`,
  )
})
