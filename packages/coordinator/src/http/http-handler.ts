import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AppContext } from '../app-context.js'
import { CoordinatorError, DrainingError, MethodNotAllowedError, NotFoundError, UnauthorizedError } from '../errors.js'
import { PROVIDER_ID_RE } from '@poolcoord/protocol'
import { drainSession, kickSession } from '../pool/pool-control.js'
import { routingEligible } from '../pool/routing-eligible.js'
import { listModels } from '../routing/list-models.js'
import { chatCompletions } from './chat-completions.js'
import { renderPoolz } from './poolz.js'
import { sendError, sendJson } from './respond.js'

type Handler = (req: IncomingMessage, res: ServerResponse) => Promise<void> | void
type Route = Partial<Record<'GET' | 'POST', Handler>>

/**
 * The coordinator's HTTP routes. Only POST /v1/chat/completions reads a body, and it bounds it;
 * a GET route never reads one.
 */
export function createHttpHandler(ctx: AppContext, lifecycle: { draining: () => boolean }) {
  const createdS = Math.floor(ctx.startedAt / 1000)
  /** Pipelined chat requests waiting per connection (http/chat-completions.ts). */
  const queued = new WeakMap<object, number>()
  const operatorOnly =
    (handler: Handler): Handler =>
    (req, res) => {
      if (!ctx.isOperator(req.headers.authorization)) throw new UnauthorizedError()
      return handler(req, res)
    }
  const metrics: Handler = async (_req, res) => {
    const text = await ctx.metrics.registry.metrics()
    res.writeHead(200, { 'content-type': ctx.metrics.registry.contentType, 'cache-control': 'no-store' })
    res.end(text)
  }
  /** New buyer work is refused while the coordinator drains for shutdown. */
  const buyerRoute =
    (handler: Handler): Handler =>
    (req, res) => {
      if (lifecycle.draining()) throw new DrainingError()
      return handler(req, res)
    }
  const routes: Record<string, Route> = {
    '/healthz': {
      GET: (_req, res) => {
        // A load balancer takes a draining instance out of rotation on the 503.
        const draining = lifecycle.draining()
        sendJson(res, draining ? 503 : 200, { ...health(ctx), status: draining ? 'draining' : 'ok' })
      },
    },
    '/poolz': { GET: operatorOnly((_req, res) => sendJson(res, 200, renderPoolz(ctx.registry.liveSessions()))) },
    '/metrics': { GET: ctx.config.metricsRequireKey ? operatorOnly(metrics) : metrics },
    '/v1/models': { GET: buyerRoute((_req, res) => sendJson(res, 200, listModels(ctx.registry.liveSessions(), createdS))) },
    '/v1/chat/completions': { POST: buyerRoute((req, res) => chatCompletions(ctx, req, res, queued)) },
  }
  /** POST /admin/providers/{provider_id}/drain|kick, operator bearer (specs/operator-api.md). */
  const admin = (action: 'drain' | 'kick', providerId: string): Handler =>
    operatorOnly((_req, res) => {
      const session = ctx.registry.get(providerId)
      if (session === undefined) throw new NotFoundError()
      if (action === 'drain') drainSession(ctx, session, { close: true })
      else kickSession(ctx, session)
      sendJson(res, action === 'drain' ? 202 : 200, {
        provider_id: session.providerId,
        assigned_id: session.assignedId,
        action,
        in_flight: session.inFlight,
      })
    })
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0] as string
    try {
      const adminMatch = /^\/admin\/providers\/([^/]+)\/(drain|kick)$/.exec(path)
      const route = adminMatch
        ? PROVIDER_ID_RE.test(adminMatch[1] as string)
          ? { POST: admin(adminMatch[2] as 'drain' | 'kick', adminMatch[1] as string) }
          : undefined
        : Object.hasOwn(routes, path)
          ? routes[path]
          : undefined
      if (route === undefined) throw new NotFoundError()
      const method = req.method === 'HEAD' ? 'GET' : req.method
      const handler = method === 'GET' || method === 'POST' ? route[method] : undefined
      if (handler === undefined) throw new MethodNotAllowedError(Object.keys(route).join(', '))
      await handler(req, res)
    } catch (err) {
      if (!(err instanceof CoordinatorError)) ctx.log.error({ err, req }, 'request failed')
      if (res.headersSent) return void res.destroy()
      const headers: Record<string, string> = {}
      if (err instanceof UnauthorizedError) headers['www-authenticate'] = 'Bearer'
      if (err instanceof MethodNotAllowedError) headers.allow = err.allow
      if (err instanceof DrainingError) {
        headers['retry-after'] = '5'
        headers.connection = 'close'
      }
      sendError(res, err, headers)
    }
  }
}

export function health(ctx: AppContext) {
  let routable = 0
  let total = 0
  for (const s of ctx.registry.liveSessions()) {
    total++
    if (routingEligible(s).eligible) routable++
  }
  return {
    status: 'ok',
    version: ctx.version,
    uptime_s: Math.floor((ctx.clock.now() - ctx.startedAt) / 1000),
    pool: { total, routable },
  }
}
