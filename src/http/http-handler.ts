import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AppContext } from '../context.js'
import { CoordinatorError, NotFoundError, UnauthorizedError } from '../errors.js'
import { routingEligible } from '../pool/routing-eligible.js'
import { renderPoolz } from './poolz.js'
import { sendError, sendJson } from './respond.js'

/** The coordinator's HTTP routes. Bodies are never read here: every route is a GET. */
export function createHttpHandler(ctx: AppContext) {
  const routes: Record<string, (req: IncomingMessage, res: ServerResponse) => Promise<void> | void> = {
    '/healthz': (_req, res) => sendJson(res, 200, health(ctx)),
    '/poolz': (req, res) => {
      if (!ctx.isOperator(req.headers.authorization)) {
        return sendError(res, new UnauthorizedError(), { 'www-authenticate': 'Bearer' })
      }
      sendJson(res, 200, renderPoolz(ctx.registry.sessions()))
    },
    '/metrics': async (_req, res) => {
      const text = await ctx.metrics.registry.metrics()
      res.writeHead(200, { 'content-type': ctx.metrics.registry.contentType })
      res.end(text)
    },
  }
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0] as string
    try {
      const route = routes[path]
      if (route === undefined) throw new NotFoundError()
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        return sendJson(res, 405, { error: { message: 'method not allowed', type: 'invalid_request_error', code: 'COORD_METHOD_NOT_ALLOWED' } }, { allow: 'GET' })
      }
      await route(req, res)
    } catch (err) {
      if (!(err instanceof CoordinatorError)) ctx.log.error({ err, req }, 'request failed')
      if (!res.headersSent) sendError(res, err)
      else res.destroy()
    }
  }
}

export function health(ctx: AppContext) {
  let routable = 0
  let total = 0
  for (const s of ctx.registry.sessions()) {
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
