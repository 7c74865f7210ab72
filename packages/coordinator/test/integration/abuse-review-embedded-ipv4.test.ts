import t from 'tap'
import WebSocket from 'ws'
import { encode, hello } from '@poolcoord/protocol'
import { startTestService, waitFor, type TestService } from '../helpers/service.js'

// Review of limits/address-prefix.ts (specs/admission.md §7.1). Only the one spelling
// `::ffff:a.b.c.d` is recognised as an IPv4 address inside IPv6. Every other way IPv4 clients are
// presented in IPv6 falls into the IPv6 path and is keyed by its /64:
// - a coordinator on an IPv6-only network behind stateless translation (SIIT-DC, RFC 7755/6052)
//   sees every IPv4 client as 64:ff9b::a.b.c.d, so the whole IPv4 internet shares the single
//   "address" 64:ff9b:0:0::/64: one address's 8 pending slots, 10 mints an hour and 16 unproven
//   sessions for everyone;
// - the other spellings of a mapped address (::FFFF:…, ::ffff:c633:6407, 0:0:0:0:0:ffff:…) all
//   land in 0:0:0:0::/64, together with ::1, and apart from the same client's canonical spelling.
// Shown through the trusted proxy's X-Real-IP, the way such addresses reach the limits.

const HOUR = 3_600_000

async function mintVia(s: TestService, id: string, realIp: string): Promise<string> {
  const ws = new WebSocket(s.wsUrl, { headers: { 'x-real-ip': realIp }, perMessageDeflate: false })
  ws.on('error', () => undefined)
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve())
    ws.once('unexpected-response', (_q, r) => reject(new Error(`upgrade refused: ${r.statusCode}`)))
  })
  const result = new Promise<string>((resolve) => {
    ws.once('message', (d) => resolve(String((JSON.parse(d.toString()) as { auth_state?: string }).auth_state)))
    ws.once('close', (code) => resolve(String(code)))
  })
  ws.send(
    encode(hello({ provider_id: id, hostname: `${id}.local`, model_id: 'llama-3-8b', binary_version: '1.0.0', max_concurrency: 2, max_context_tokens: 8192 })),
  )
  const out = await result
  ws.close()
  await waitFor(() => s.svc.ctx.registry.get(id) === undefined, `${id} leaving`)
  return out
}

t.test('IPv4 clients seen through a NAT64/SIIT prefix each get their own address budget', async (t) => {
  const mint = { mintPerAddress: { burst: 2, periodMs: HOUR }, mintPerPrefix: null, mintGlobal: null, recoveryPerId: null, mintNewcomer: null, healPerId: null }
  const s = await startTestService(t, { env: { trustProxy: 'true' }, limits: { mint } })
  // 198.51.100.7, 203.0.113.7 and 192.0.2.1: three hosts on three networks, one first-time provider each.
  const out = []
  for (const [id, ip] of [
    ['siit-1', '64:ff9b::c633:6407'],
    ['siit-2', '64:ff9b::cb00:7107'],
    ['siit-3', '64:ff9b::c000:201'],
  ] as const)
    out.push(await mintVia(s, id, ip))
  t.same(out, ['self_minted', 'self_minted', 'self_minted'], 'each host mints once, well within its own 2')
})
