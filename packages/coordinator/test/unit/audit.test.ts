import t from 'tap'
import { auditFlip, type PoolzSession } from '../../src/admin/audit.js'
import type { TokenInfo } from '../../src/tokens/token-store.js'

const NOW = new Date('2026-11-22T12:00:00Z')
const DAY = 24 * 3600_000

function token(over: Partial<TokenInfo>): TokenInfo {
  return {
    id: '1',
    tokenPrefix: 'aaaaaaaaaaaa',
    providerId: 'p1',
    providerName: '',
    origin: 'self_minted',
    createdAt: new Date(NOW.getTime() - 30 * DAY),
    lastUsedAt: new Date(NOW.getTime() - 3600_000),
    revokedAt: null,
    expiresAt: null,
    graceUntil: null,
    ...over,
  }
}

function session(over: Partial<PoolzSession>): PoolzSession {
  return { provider_id: 'p1', assigned_id: 'a1', auth_state: 'bearer_validated', token_prefix: 'aaaaaaaaaaaa', ...over }
}

const reasons = (tokens: TokenInfo[], sessions: PoolzSession[] | null): string[] =>
  auditFlip(tokens, sessions, NOW, DAY).map((o) => `${o.reason}:${o.provider_id}`)

t.test('tokens', async (t) => {
  t.same(reasons([token({})], null), [], 'recently used: fine')
  t.same(reasons([token({ lastUsedAt: null })], null), ['unproven_token:p1'])
  t.same(reasons([token({ lastUsedAt: new Date(NOW.getTime() - 2 * DAY) })], null), ['stale_token:p1'])
  t.same(reasons([token({ lastUsedAt: null, revokedAt: NOW })], null), [], 'revoked tokens are not offenders')
})

t.test('a long-connected provider is not stale while its bearer session holds the token', async (t) => {
  const old = token({ lastUsedAt: new Date(NOW.getTime() - 9 * DAY) })
  t.same(reasons([old], [session({})]), [], 'held by a live bearer session')
  t.same(reasons([old], []), ['stale_token:p1'], 'no live session: stale')
  t.same(reasons([old], null), ['stale_token:p1'], '/poolz unreachable: stale')
  t.same(reasons([old], [session({ token_prefix: 'bbbbbbbbbbbb' })]), ['stale_token:p1'], 'another token of the same id does not count')
  t.same(reasons([old], [session({ provider_id: 'p2' })]), ['stale_token:p1'], 'the same prefix on another id does not count')
  t.same(reasons([old], [session({ auth_state: 'self_minted' })]), ['stale_token:p1', 'self_minted_session:p1'], 'only a bearer session proves use')
  t.same(reasons([token({ lastUsedAt: null })], [session({})]), ['unproven_token:p1'], 'an unproven token stays an offender')
})

t.test('sessions', async (t) => {
  t.same(reasons([], [session({ auth_state: 'bearerless_duplicate', token_prefix: null })]), ['bearerless_duplicate_session:p1'])
  t.same(reasons([], [session({ auth_state: 'self_minted' })]), ['self_minted_session:p1'])
})
