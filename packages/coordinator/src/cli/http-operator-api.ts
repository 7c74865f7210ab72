import type {
  AdminIdentity,
  AdminToken,
  AuditResponse,
  CordonResponse,
  CordonRow,
  ErrorResponse,
  IdentityActionResponse,
  IssuedTokenResponse,
  PoolzResponse,
  PruneResponse,
  RevokeResponse,
} from '@poolcoord/protocol'
import { randomBytes } from 'node:crypto'
import { operatorProof, proofsEqual } from '../operator-auth.js'
import { CliFailure, type OperatorApi } from './operator-api.js'

const PROBE_TIMEOUT_MS = 3000
const CALL_TIMEOUT_MS = 10_000

export type Probe = { kind: 'coordinator' } | { kind: 'none' }

/**
 * Who is at `baseUrl`? Only a refused connection means nobody, and only then may the CLI work on
 * the database instead: any other failure (TLS, a malformed URL, silence) is an error, because a
 * coordinator may well be running there, and working around it would act on a store whose live
 * pool never hears of the change. A server that answers must prove it holds the operator key
 * (GET /operator-proof) before the key is sent: a process that took the coordinator's port
 * while it was down never gets it.
 */
export async function probeCoordinator(baseUrl: string, key: string | null): Promise<Probe> {
  let url: URL
  try {
    url = new URL(baseUrl)
  } catch {
    throw new CliFailure(`--url must be an http:// or https:// URL, not ${JSON.stringify(baseUrl.slice(0, 100))}`, 2, 'COORD_USAGE')
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new CliFailure(`--url must be an http:// or https:// URL`, 2, 'COORD_USAGE')
  const nonce = randomBytes(32).toString('hex')
  let res: Response
  try {
    res = await fetch(`${baseUrl}/operator-proof?nonce=${nonce}`, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) })
  } catch (err) {
    const code = (err as { cause?: { code?: unknown } }).cause?.code
    if (code === 'ECONNREFUSED') return { kind: 'none' }
    const why = (err as Error).name === 'TimeoutError' ? `no answer within ${PROBE_TIMEOUT_MS} ms` : typeof code === 'string' ? code : 'the request failed'
    throw new CliFailure(`cannot talk to the coordinator at ${baseUrl} (${why}); fix --url, or stop it to work on the database`, 1, 'COORD_UNREACHABLE')
  }
  const body = (await res.json().catch(() => null)) as { proof?: unknown } | null
  if (key === null) throw new CliFailure("no operator key: set COORD_OPERATOR_KEY, or COORD_DATA_DIR to the coordinator's data directory")
  if (!res.ok || typeof body?.proof !== 'string' || !proofsEqual(body.proof, operatorProof(key, nonce))) {
    throw new CliFailure(`the server at ${baseUrl} cannot prove it holds this operator key, so the key was not sent to it`, 1, 'COORD_UNVERIFIED')
  }
  return { kind: 'coordinator' }
}

/** The admin API of a running coordinator (specs/operator-api.md), with the operator key. */
export class HttpOperatorApi implements OperatorApi {
  constructor(
    private readonly baseUrl: string,
    private readonly key: string,
  ) {}

  async listTokens(activeOnly: boolean): Promise<AdminToken[]> {
    return (await this.call<{ tokens: AdminToken[] }>('GET', `/admin/tokens${activeOnly ? '?active=true' : ''}`)).tokens
  }

  issueToken(providerId: string, name: string): Promise<IssuedTokenResponse> {
    return this.call('POST', '/admin/tokens', { provider_id: providerId, ...(name === '' ? {} : { name }) })
  }

  revokeToken(prefix: string, kick: boolean): Promise<RevokeResponse> {
    return this.call('POST', `/admin/tokens/${encodeURIComponent(prefix)}/revoke`, { kick })
  }

  pruneTokens(olderThanS: number, apply: boolean): Promise<PruneResponse> {
    return this.call('POST', '/admin/tokens/prune', { older_than_s: olderThanS, apply })
  }

  audit(maxLastUsedAgeS: number): Promise<AuditResponse> {
    return this.call('GET', `/admin/audit/pre-flip?max_last_used_age_s=${maxLastUsedAgeS}`)
  }

  async listIdentities(): Promise<AdminIdentity[]> {
    return (await this.call<{ identities: AdminIdentity[] }>('GET', '/admin/identities')).identities
  }

  revokeIdentity(providerId: string): Promise<IdentityActionResponse> {
    return this.call('POST', `/admin/identities/${encodeURIComponent(providerId)}/revoke`, {})
  }

  resetIdentity(providerId: string): Promise<IdentityActionResponse> {
    return this.call('POST', `/admin/identities/${encodeURIComponent(providerId)}/reset`, {})
  }

  async listCordons(): Promise<CordonRow[]> {
    return (await this.call<{ cordons: CordonRow[] }>('GET', '/admin/cordons')).cordons
  }

  cordon(providerId: string, reason: string): Promise<CordonResponse> {
    return this.call('POST', `/admin/providers/${encodeURIComponent(providerId)}/cordon`, { reason })
  }

  uncordon(providerId: string): Promise<CordonResponse> {
    return this.call('POST', `/admin/providers/${encodeURIComponent(providerId)}/uncordon`, {})
  }

  pool(): Promise<PoolzResponse> {
    return this.call('GET', '/poolz')
  }

  async close(): Promise<void> {}

  private async call<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    let res: Response
    try {
      res = await fetch(`${this.baseUrl}${path}`, {
        method,
        headers: { authorization: `Bearer ${this.key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(CALL_TIMEOUT_MS),
      })
    } catch {
      throw new CliFailure(`the coordinator at ${this.baseUrl} stopped answering`, 1, 'COORD_UNREACHABLE')
    }
    if (res.status === 401) throw new CliFailure(`the coordinator at ${this.baseUrl} refused the operator key`, 1, 'COORD_UNAUTHORIZED')
    const payload = (await res.json().catch(() => null)) as T | ErrorResponse | null
    if (res.ok && payload !== null) return payload as T
    const err = (payload as ErrorResponse | null)?.error
    if (err === undefined) throw new CliFailure(`the coordinator at ${this.baseUrl} answered ${res.status}`)
    // 400s are the caller's input, as the CLI's own checks would have said.
    throw new CliFailure(err.message, res.status === 400 ? 2 : 1, err.code)
  }
}
