import t from 'tap'
import { ManualClock } from '../../src/clock.js'
import { defaultMintRules } from '../../src/limits/abuse-settings.js'
import { join } from '../helpers/provider-client.js'
import { startTestService, waitFor, type TestService } from '../helpers/service.js'

// Review of the abuse limits (specs/admission.md §7.2): the pool-wide mint bucket is a budget that
// any 12 addresses in 3 prefixes can spend on their own, every hour, with the default settings.
// Once it is spent, every first-time provider of the whole pool, from any address, is refused
// 4008 and told to back off 5-15 minutes. The attacker keeps it spent by taking each token as it
// refills (one every 30 s), which its own address and prefix buckets allow.

const MINUTE = 60_000

async function mintFrom(s: TestService, id: string, from: string): Promise<boolean> {
  const r = await join(s.wsUrl, id, { localAddress: from })
  if (r.ack === undefined) return false
  await r.client.close()
  await waitFor(() => s.svc.ctx.registry.get(id) === undefined, `${id} leaving`)
  return true
}

t.test('attack: a few addresses keep the pool-wide mint budget spent; a first-time provider from an untouched prefix never gets in', async (t) => {
  const clock = new ManualClock(Date.now())
  const s = await startTestService(t, { clock, limits: { mint: defaultMintRules } })
  // Spend the hour's 120 at once: 3 prefixes x 4 addresses x 10, each within its own address and prefix buckets.
  let minted = 0
  for (let p = 0; p < 3; p++)
    for (let a = 1; a <= 4; a++) for (let i = 0; i < 10; i++) if (await mintFrom(s, `junk-${p}-${a}-${i}`, `127.0.${20 + p}.${a}`)) minted++
  t.equal(minted, 120, 'the attacker minted 120 identities without meeting its address or prefix limits')

  // Then take each global token as it refills (one per 30 s), rotating over 20 more addresses in 2 more prefixes.
  const rotation = Array.from({ length: 20 }, (_, i) => `127.0.${23 + (i % 2)}.${1 + Math.floor(i / 2)}`)
  let next = 0
  let attackerRefills = 0
  const victim: string[] = []
  for (let step = 1; step <= 30; step++) {
    clock.advance(MINUTE / 2)
    if (await mintFrom(s, `refill-${step}`, rotation[next++ % rotation.length] as string)) attackerRefills++
    // The victim follows the agent's policy for 4008: it retries every 5 minutes or so.
    if (step % 10 === 0) {
      const r = await join(s.wsUrl, 'first-time-provider', { localAddress: '127.0.99.1' })
      victim.push(r.ack !== undefined ? 'admitted' : `${r.close.code} ${r.close.reason}`)
      if (r.ack !== undefined) await r.client.close()
    }
  }
  t.equal(attackerRefills, 30, 'the attacker took every token that refilled in 15 minutes')
  t.ok(victim.includes('admitted'), `the provider from a prefix that never minted gets in within 15 minutes (its attempts: ${victim.join(', ')})`)
})
