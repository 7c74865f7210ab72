import type { IncomingMessage } from 'node:http'
import { PROVIDER_ID_RE, TOKEN_PREFIX_RE } from '@poolcoord/protocol'
import { OperatorOps, type LivePool } from '../admin/operator-ops.js'
import type { AppContext } from '../app-context.js'
import { NotFoundError, UsageError } from '../errors.js'
import { drainSession, kickSession } from '../pool/pool-control.js'
import { parseJsonObject } from './json-object.js'
import { readBody } from './read-body.js'
import { sendJson } from './respond.js'
import type { Handler, Route } from './route-table.js'

/** Operator request bodies are a few fields: 16 KiB is far more than any needs. */
const MAX_ADMIN_BODY_BYTES = 16 * 1024

/**
 * The admin API under /admin/ (specs/operator-api.md). Every route here is wrapped by the
 * caller's operator check, so nothing runs, and nothing is revoked, for a caller without the
 * key. Token, identity and cordon operations are OperatorOps, the same code coordinator-cli runs
 * on the database when no coordinator answers. Keys are path templates (http/route-table.ts); a
 * malformed {provider_id} or {prefix} makes the path unknown (404), except under
 * /admin/identities/, where OperatorOps refuses it (400): there a 404 means "no pinned key".
 */
export function createAdminRoutes(ctx: AppContext, stats: () => unknown): Record<string, Route> {
  const kick = async (providerId: string): Promise<boolean> => {
    const session = ctx.registry.get(providerId)
    if (session !== undefined) return kickSession(ctx, session)
    // Cluster mode: the provider's socket may be on another node.
    return (await ctx.cluster?.ops.remote('kick', providerId)) != null
  }
  /**
   * Closes the provider's session only if the revoked token admitted it (its prefix): a session
   * the provider opened with another token, such as one it recovered with its key, keeps running.
   * In cluster mode the row comes from the cluster-wide view, and the node that holds it kicks.
   */
  const kickHolding = async (providerId: string, tokenPrefix: string): Promise<boolean> => {
    const local = ctx.registry.get(providerId)
    if (local !== undefined) return local.tokenPrefix === tokenPrefix ? kickSession(ctx, local) : false
    if (ctx.cluster === null) return false
    const row = ctx.pool.sessionList().find((s) => s.providerId === providerId && s.tokenPrefix === tokenPrefix)
    return row !== undefined && (await ctx.cluster.ops.remote('kick', providerId)) != null
  }
  const live: LivePool = {
    sessions: () =>
      Array.from(ctx.pool.liveSessions(), (s) => ({
        provider_id: s.providerId,
        assigned_id: s.assignedId,
        auth_state: s.authState,
        token_prefix: s.tokenPrefix,
      })),
    kick: async (providerId) => {
      // Under the id's admission lock, which key admission reads and writes the pin under: one
      // that read it before revoke-identity committed has registered its session by then, so
      // the kick finds it. With the lock's queue full (a flood of hellos), kick without waiting.
      const locked = await ctx.admissionLock.run(providerId, () => kick(providerId))
      return locked.ok ? locked.value : kick(providerId)
    },
    kickIfToken: async (providerId, tokenPrefix) => {
      const locked = await ctx.admissionLock.run(providerId, () => kickHolding(providerId, tokenPrefix))
      return locked.ok ? locked.value : kickHolding(providerId, tokenPrefix)
    },
    setCordoned: (providerId, cordoned) => ctx.registry.setCordoned(providerId, cordoned),
  }
  const ops = new OperatorOps(ctx.tokens, ctx.cordons, ctx.identities, live)
  const byProvider = { provider_id: PROVIDER_ID_RE }
  /** Drain and kick act on the live session only: without one, there is nothing to do (404). */
  const sessionAction =
    (action: 'drain' | 'kick'): Handler =>
    async (_req, res, p) => {
      const providerId = p.provider_id as string
      const session = ctx.registry.get(providerId)
      let done: { provider_id: string; assigned_id: string; in_flight: number } | null = null
      if (session !== undefined) {
        if (action === 'drain') drainSession(ctx, session, { close: true })
        else kickSession(ctx, session)
        done = { provider_id: session.providerId, assigned_id: session.assignedId, in_flight: session.inFlight }
      } else if (ctx.cluster !== null) {
        // Cluster mode: the node whose lease names the provider acts on its own session.
        done = await ctx.cluster.ops.remote(action, providerId)
      }
      if (done === null) throw new NotFoundError()
      sendJson(res, action === 'drain' ? 202 : 200, { ...done, action })
    }
  return {
    '/admin/tokens': {
      GET: async (req, res) => sendJson(res, 200, { tokens: await ops.listTokens(query(req).get('active') === 'true') }),
      POST: async (req, res) => {
        const body = await jsonBody(req)
        sendJson(res, 201, await ops.issueToken(str(body, 'provider_id', true), str(body, 'name', false)))
      },
    },
    '/admin/tokens/prune': {
      POST: async (req, res) => {
        const body = await jsonBody(req)
        sendJson(res, 200, await ops.pruneTokens(num(body, 'older_than_s'), bool(body, 'apply')))
      },
    },
    '/admin/tokens/{prefix}/revoke': {
      params: { prefix: TOKEN_PREFIX_RE },
      POST: async (req, res, p) => {
        const body = await jsonBody(req)
        sendJson(res, 200, await ops.revokeToken(p.prefix as string, bool(body, 'kick')))
      },
    },
    '/admin/audit/pre-flip': {
      GET: async (req, res) => sendJson(res, 200, await ops.audit(Number(query(req).get('max_last_used_age_s') ?? 86_400))),
    },
    '/admin/identities': { GET: async (_req, res) => sendJson(res, 200, { identities: await ops.listIdentities() }) },
    // No `params` check: OperatorOps answers a malformed id with 400 COORD_PROVIDER_ID_INVALID.
    '/admin/identities/{provider_id}/revoke': { POST: async (_req, res, p) => sendJson(res, 200, await ops.revokeIdentity(p.provider_id as string)) },
    '/admin/identities/{provider_id}/reset': { POST: async (_req, res, p) => sendJson(res, 200, await ops.resetIdentity(p.provider_id as string)) },
    '/admin/cordons': { GET: async (_req, res) => sendJson(res, 200, { cordons: await ops.listCordons() }) },
    '/admin/providers/{provider_id}/cordon': {
      params: byProvider,
      POST: async (req, res, p) => {
        const body = await jsonBody(req)
        sendJson(res, 200, await ops.cordon(p.provider_id as string, str(body, 'reason', false)))
        ctx.cluster?.cordonsChanged()
      },
    },
    '/admin/providers/{provider_id}/uncordon': {
      params: byProvider,
      POST: async (_req, res, p) => {
        sendJson(res, 200, await ops.uncordon(p.provider_id as string))
        ctx.cluster?.cordonsChanged()
      },
    },
    '/admin/providers/{provider_id}/drain': { params: byProvider, POST: sessionAction('drain') },
    '/admin/providers/{provider_id}/kick': { params: byProvider, POST: sessionAction('kick') },
    '/admin/stats': { GET: (_req, res) => sendJson(res, 200, stats()) },
  }
}

function query(req: IncomingMessage): URLSearchParams {
  return new URL(req.url ?? '/', 'http://localhost').searchParams
}

/** An empty body is an empty object: every field of every admin body is optional or checked. */
async function jsonBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const body = await readBody(req, MAX_ADMIN_BODY_BYTES)
  return body.text.trim() === '' ? {} : parseJsonObject(body.text, body.bytes)
}

function str(body: Record<string, unknown>, field: string, required: boolean): string {
  const v = body[field]
  if (v === undefined && !required) return ''
  if (typeof v !== 'string' || v.length > 1024 || /[\u0000-\u001f\u007f]/.test(v)) throw new UsageError(`${field} must be a string`)
  return v
}

function bool(body: Record<string, unknown>, field: string): boolean {
  const v = body[field]
  if (v !== undefined && typeof v !== 'boolean') throw new UsageError(`${field} must be a boolean`)
  return v === true
}

function num(body: Record<string, unknown>, field: string): number {
  const v = body[field]
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new UsageError(`${field} must be a number`)
  return v
}
