import { readFileSync } from 'node:fs'
import type { Route } from './route-table.js'

/**
 * The operator dashboard (specs/operator-api.md, "Dashboard"): three static files, public
 * because they hold no data. The page reads the pool from /poolz and /admin/stats with the
 * operator key the operator types in. The directory resolves from this file, so the same
 * lookup works from src/ (tests) and dist/ (the package, which ships static/).
 */
const DIR = new URL('../../static/dashboard/', import.meta.url)

/** No inline script or style anywhere: the page runs its one module and its one stylesheet. */
export const DASHBOARD_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

const FILES: Record<string, { file: string; type: string }> = {
  '/dashboard': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/dashboard/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/dashboard/dashboard.js': { file: 'dashboard.js', type: 'text/javascript; charset=utf-8' },
  '/dashboard/dashboard.css': { file: 'dashboard.css', type: 'text/css; charset=utf-8' },
}

/** Read on first request, then served from memory. */
const cache = new Map<string, Buffer>()

function body(file: string): Buffer {
  let b = cache.get(file)
  if (b === undefined) {
    b = readFileSync(new URL(file, DIR))
    cache.set(file, b)
  }
  return b
}

/** The dashboard's routes, for the route table: pages (`page: true`), left out of /openapi.json. */
export function dashboardRoutes(): Record<string, Route> {
  return Object.fromEntries(Object.entries(FILES).map(([path, { file, type }]) => [path, page(file, type)]))
}

function page(file: string, type: string): Route {
  return {
    page: true,
    GET: (_req, res) => {
      const b = body(file)
      res.writeHead(200, {
        'content-type': type,
        'content-length': b.length,
        'cache-control': 'no-store',
        'content-security-policy': DASHBOARD_CSP,
        'x-content-type-options': 'nosniff',
        'referrer-policy': 'no-referrer',
        'x-frame-options': 'DENY',
      })
      res.end(b)
    },
  }
}
