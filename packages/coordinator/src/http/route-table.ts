import type { IncomingMessage, ServerResponse } from 'node:http'

/** Path parameters as they appear in the path, not percent-decoded: each route decodes what it accepts. */
export type Params = Readonly<Record<string, string>>
export type Handler = (req: IncomingMessage, res: ServerResponse, params: Params) => Promise<void> | void

export const METHODS = ['GET', 'POST'] as const
export type Method = (typeof METHODS)[number]

export interface Route extends Partial<Record<Method, Handler>> {
  /**
   * Served to people (HTML, JS, CSS), not part of the API: /openapi.json leaves it out, and its
   * test requires every other route to be documented.
   */
  page?: boolean
  /** Checks on the raw value of a path parameter; a value that fails makes the path unknown (404). */
  params?: Readonly<Record<string, RegExp>>
  /** The template's last parameter takes the rest of the path, `/` included (model ids hold slashes). */
  greedy?: boolean
}

/** One served operation, as /openapi.json must document it. */
export interface ServedRoute {
  method: Method
  /** The OpenAPI path template, e.g. `/admin/providers/{provider_id}/drain`. */
  path: string
  page: boolean
}

interface Compiled {
  re: RegExp
  names: string[]
  route: Route
}

/**
 * The router's one table, keyed by OpenAPI path templates (`/v1/models/{id}`), so that what is
 * served and what /openapi.json documents are the same list. Fixed paths are one lookup; the
 * few templated ones are tried in order after them.
 */
export class RouteTable {
  private readonly fixed = new Map<string, Route>()
  private readonly templated: Compiled[] = []

  constructor(private readonly routes: Readonly<Record<string, Route>>) {
    for (const [template, route] of Object.entries(routes)) {
      if (!template.includes('{')) {
        this.fixed.set(template, route)
        continue
      }
      // split() with a capture group alternates literal text and parameter names.
      const parts = template.split(/\{([a-z_]+)\}/)
      const names: string[] = []
      let source = ''
      for (let i = 0; i < parts.length; i++) {
        const part = parts[i] as string
        if (i % 2 === 0) {
          source += escapeRegExp(part)
        } else {
          names.push(part)
          source += route.greedy === true && i === parts.length - 2 ? '(.+)' : '([^/]+)'
        }
      }
      this.templated.push({ re: new RegExp(`^${source}$`), names, route })
    }
  }

  match(path: string): { route: Route; params: Params } | undefined {
    const route = this.fixed.get(path)
    if (route !== undefined) return { route, params: {} }
    for (const c of this.templated) {
      const m = c.re.exec(path)
      if (m === null) continue
      const params: Record<string, string> = {}
      c.names.forEach((name, i) => (params[name] = m[i + 1] as string))
      const checks = c.route.params ?? {}
      if (Object.entries(checks).every(([name, re]) => re.test(params[name] ?? ''))) return { route: c.route, params }
    }
    return undefined
  }

  /** Every method of every route, in table order. */
  list(): ServedRoute[] {
    return Object.entries(this.routes).flatMap(([path, route]) => methodsOf(route).map((method) => ({ method, path, page: route.page === true })))
  }
}

export function methodsOf(route: Route): Method[] {
  return METHODS.filter((m) => route[m] !== undefined)
}

/** The same route with each method's handler wrapped (an auth or drain check), its settings kept. */
export function wrapRoute(route: Route, wrap: (handler: Handler) => Handler): Route {
  const out: Route = { ...route }
  for (const m of methodsOf(route)) out[m] = wrap(route[m] as Handler)
  return out
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}
