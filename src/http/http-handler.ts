import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AppContext } from '../context.js'
import { CoordinatorError, MethodNotAllowedError, NotFoundError, UnauthorizedError } from '../errors.js'
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
export function createHttpHandler(ctx: AppContext) {
  const createdS = Math.floor(ctx.startedAt / 1000)
  const operatorOnly = (handler: Handler): Handler => (req, res) => {
    if (!ctx.isOperator(req.headers.authorization)) throw new UnauthorizedError()
    return handler(req, res)
  }
  const metrics: Handler = async (_req, res) => {
    const text = await ctx.metrics.registry.metrics()
    res.writeHead(200, { 'content-type': ctx.metrics.registry.contentType, 'cache-control': 'no-store' })
    res.end(text)
  }
  const routes: Record<string, Route> = {
    '/healthz': { GET: (_req, res) => sendJson(res, 200, health(ctx)) },
    '/poolz': { GET: operatorOnly((_req, res) => sendJson(res, 200, renderPoolz(ctx.registry.liveSessions()))) },
    '/metrics': { GET: ctx.config.metricsRequireKey ? operatorOnly(metrics) : metrics },
    '/v1/models': { GET: (_req, res) => sendJson(res, 200, listModels(ctx.registry.liveSessions(), createdS)) },
    '/v1/chat/completions': { POST: (req, res) => chatCompletions(ctx, req, res) },
  }
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0] as string
    try {
      const route = Object.hasOwn(routes, path) ? routes[path] : undefined
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
