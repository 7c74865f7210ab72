import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { PoolzCluster } from '@poolcoord/protocol'
import type { AppContext } from '../app-context.js'
import { CoordinatorError, DrainingError, MethodNotAllowedError, NotFoundError, RequestTooLargeError, UnauthorizedError, UsageError } from '../errors.js'
import { PROOF_NONCE_RE } from '../operator-auth.js'
import { routingEligible } from '../pool/routing-eligible.js'
import { listModels } from '../routing/list-models.js'
import { createAdminRoutes } from './admin-routes.js'
import { chatCompletions } from './chat-completions.js'
import { dashboardRoutes } from './dashboard.js'
import { openApiDocument } from './openapi.js'
import { renderPoolz, type PoolzHealth } from './poolz.js'
import { sendError, sendJson } from './respond.js'
import { retrieveModel } from './retrieve-model.js'
import { methodsOf, RouteTable, wrapRoute, type Handler, type Route } from './route-table.js'

/**
 * The coordinator's HTTP routes. Only POST /v1/chat/completions and the admin POSTs read a body,
 * each bounded (the buyer limit; 16 KiB for admin bodies); a GET route never reads one. Keys are OpenAPI path templates (route-table.ts): every route but
 * the `page: true` ones must be described by /openapi.json (http/openapi.ts), and a test checks it.
 */
export function createHttpHandler(ctx: AppContext, lifecycle: { draining: () => boolean }) {
  const createdS = Math.floor(ctx.startedAt / 1000)
  /** Pipelined chat requests waiting per connection (http/chat-completions.ts). */
  const queued = new WeakMap<object, number>()
  const operatorOnly =
    (handler: Handler): Handler =>
    (req, res, params) => {
      if (!ctx.isOperator(req.headers.authorization)) throw new UnauthorizedError()
      return handler(req, res, params)
    }
  const metrics: Handler = async (_req, res) => {
    const text = await ctx.metrics.registry.metrics()
    res.writeHead(200, { 'content-type': ctx.metrics.registry.contentType, 'cache-control': 'no-store' })
    res.end(text)
  }
  /** New buyer work is refused while the coordinator drains for shutdown. */
  const buyerRoute =
    (handler: Handler): Handler =>
    (req, res, params) => {
      if (lifecycle.draining()) throw new DrainingError()
      return handler(req, res, params)
    }
  const openapi = openApiDocument(ctx.version)
  const routes: Record<string, Route> = {
    '/healthz': {
      GET: (_req, res) => {
        // A load balancer takes a draining or fenced instance out of rotation on the 503.
        const draining = lifecycle.draining()
        const fenced = ctx.cluster !== null && !ctx.cluster.isLive()
        sendJson(res, draining || fenced ? 503 : 200, { ...health(ctx), status: draining ? 'draining' : fenced ? 'fenced' : 'ok' })
      },
    },
    '/operator-proof': {
      GET: (req, res) => {
        const nonce = new URL(req.url ?? '/', 'http://localhost').searchParams.get('nonce') ?? ''
        if (!PROOF_NONCE_RE.test(nonce)) throw new UsageError('nonce must be 64 lowercase hex characters')
        sendJson(res, 200, { proof: ctx.proveOperatorKey(nonce) })
      },
    },
    '/poolz': { GET: operatorOnly((_req, res) => sendJson(res, 200, renderPoolz(ctx.pool.liveSessions(), poolzHealth(ctx), clusterSection(ctx)))) },
    '/metrics': { GET: ctx.config.metricsRequireKey ? operatorOnly(metrics) : metrics },
    '/v1/models': { GET: buyerRoute((_req, res) => sendJson(res, 200, listModels(ctx.pool.liveSessions(), createdS))) },
    '/v1/models/{id}': {
      greedy: true,
      GET: buyerRoute((_req, res, p) => sendJson(res, 200, retrieveModel(ctx.pool.liveSessions(), createdS, p.id as string))),
    },
    '/v1/chat/completions': { POST: buyerRoute((req, res) => chatCompletions(ctx, req, res, queued)) },
    // Public: the API's description holds no secret.
    '/openapi.json': { GET: (_req, res) => sendJson(res, 200, openapi) },
    // Public static pages (http/dashboard.ts): they hold no data; the data comes from /poolz and /admin/ with the key.
    ...dashboardRoutes(),
  }
  const admin = createAdminRoutes(ctx, () => ctx.history.snapshot(ctx.clock.now()))
  // Every admin route is behind the operator key: nothing of it runs without it.
  for (const [path, route] of Object.entries(admin)) routes[path] = wrapRoute(route, operatorOnly)
  const table = new RouteTable(routes)
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = req.url ?? '/'
    const q = url.indexOf('?')
    const path = q < 0 ? url : url.slice(0, q)
    try {
      const found = table.match(path)
      if (found === undefined) throw new NotFoundError()
      const method = req.method === 'HEAD' ? 'GET' : req.method
      const handler = method === 'GET' || method === 'POST' ? found.route[method] : undefined
      if (handler === undefined) throw new MethodNotAllowedError(methodsOf(found.route).join(', '))
      await handler(req, res, found.params)
    } catch (err) {
      if (!(err instanceof CoordinatorError)) ctx.log.error({ err, req }, 'request failed')
      if (res.headersSent) return void res.destroy()
      const headers: Record<string, string> = {}
      if (err instanceof UnauthorizedError) headers['www-authenticate'] = 'Bearer'
      if (err instanceof MethodNotAllowedError) headers.allow = err.allow
      // buyer-api.md §2: every answer on the chat path carries a request id, a wrong method's too.
      if (path === '/v1/chat/completions' && !res.hasHeader('x-request-id')) headers['x-request-id'] = `req-${randomUUID()}`
      // The rest of an oversized body is never read: the connection cannot be reused.
      if (err instanceof RequestTooLargeError) headers.connection = 'close'
      if (err instanceof DrainingError) {
        headers['retry-after'] = '5'
        headers.connection = 'close'
      }
      sendError(res, err, headers)
    }
  }
  // What this handler serves, from the table it dispatches with: /openapi.json's test compares it with the document.
  return Object.assign(handle, { routes: table.list() })
}

export function health(ctx: AppContext) {
  let routable = 0
  let total = 0
  for (const s of ctx.pool.liveSessions()) {
    total++
    if (routingEligible(s).eligible) routable++
  }
  const c = ctx.cluster?.health()
  return {
    status: 'ok',
    version: ctx.version,
    uptime_s: Math.floor((ctx.clock.now() - ctx.startedAt) / 1000),
    pool: { total, routable },
    ...(c === undefined
      ? {}
      : { node_id: c.node_id, cluster: { state: c.state, incarnation: c.incarnation, fence_reason: c.fence_reason, nats: c.nats, live_nodes: c.live_nodes } }),
  }
}

function poolzHealth(ctx: AppContext): PoolzHealth {
  const now = ctx.clock.now()
  return { now, released: ctx.ejection.fresh(ctx.pool, now), strikes: (id) => ctx.strikes.get(id, now) }
}

/** /poolz's cluster section: this node and every node the last poll of pc_nodes saw. */
function clusterSection(ctx: AppContext): PoolzCluster | null {
  const c = ctx.cluster
  if (c === null) return null
  const h = c.health()
  const nodes = [...c.nodes().nodes.values()]
    .map((n) => ({
      node_id: n.node_id,
      incarnation: n.incarnation,
      host: n.host,
      started_at: n.started_at,
      sessions: c.pool.sessionsOf(n.node_id, n.incarnation),
    }))
    .sort((a, b) => a.node_id.localeCompare(b.node_id))
  return { node_id: h.node_id, incarnation: h.incarnation, state: h.state, nodes }
}
