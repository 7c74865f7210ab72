import t from 'tap'
import { childUrls, spawnCoordinator } from '../helpers/child-coordinator.js'
import { startPrivatePg } from '../helpers/private-pg.js'
import { join } from '../helpers/provider-client.js'

// Issue 15: the mint budget is exact across coordinator processes sharing one database, and
// across a restart. Two real coordinator processes on one PostgreSQL (a private cluster, so that
// the database is fresh), a pool-wide budget of 3 new identities an hour, and first-time
// providers from four prefixes, so that no address or prefix bucket is what refuses.

const MINT_LIMITED = { code: 4008, reason: 'mint_rate_limited' }

t.test('two coordinator processes spend one mint budget, and a restarted one still sees it spent', async (t) => {
  const pg = await startPrivatePg(t)
  const env = {
    DATABASE_URL: await pg.createDatabase('mint'),
    COORD_MINT_RATE_ADDRESS: '10/h',
    COORD_MINT_RATE_PREFIX: '40/h',
    COORD_MINT_RATE_GLOBAL: '3/h',
    COORD_MINT_RATE_NEWCOMER: 'off',
  }
  const a = spawnCoordinator(t, env)
  const b = spawnCoordinator(t, env)
  const [ua, ub] = await Promise.all([childUrls(a), childUrls(b)])
  const mint = async (wsUrl: string, id: string, from: string) => {
    const r = await join(wsUrl, id, { localAddress: from })
    await r.client.close()
    return r.ack !== undefined ? 'admitted' : r.close
  }
  t.equal(await mint(ua.wsUrl, 'a-0', '127.0.31.1'), 'admitted')
  t.equal(await mint(ua.wsUrl, 'a-1', '127.0.32.1'), 'admitted')
  t.equal(await mint(ub.wsUrl, 'b-0', '127.0.33.1'), 'admitted', 'the third, on the other process')
  t.same(await mint(ub.wsUrl, 'b-1', '127.0.34.1'), MINT_LIMITED, 'the fourth is refused, though this process admitted one only')
  t.same(await mint(ua.wsUrl, 'a-2', '127.0.35.1'), MINT_LIMITED, 'and so it is on the first')

  b.child.kill('SIGTERM')
  t.equal((await b.exited).code, 0)
  const c = spawnCoordinator(t, env)
  const uc = await childUrls(c)
  t.same(await mint(uc.wsUrl, 'c-0', '127.0.36.1'), MINT_LIMITED, 'a restarted process does not get a fresh budget')
  const refusals = [...a.lines, ...b.lines, ...c.lines].filter((l) => l.event === 'admission.mint_rate_limited')
  t.same(
    refusals.map((l) => [l.bucket, l.local]),
    [
      ['global', false],
      ['global', false],
      ['global', false],
    ],
    'each refusal came from the shared bucket, not from a node gate',
  )
})
