import t from 'tap'
import { RouteTable, wrapRoute, type Handler } from '../../src/http/route-table.js'
import { decodeModelId } from '../../src/http/retrieve-model.js'

const h: Handler = () => undefined

t.test('fixed paths, templates, parameter checks and greedy parameters', async (t) => {
  const table = new RouteTable({
    '/v1/models': { GET: h },
    '/v1/models/{id}': { greedy: true, GET: h },
    '/admin/providers/{provider_id}/drain': { params: { provider_id: /^[a-z0-9-]{1,8}$/ }, POST: h },
    '/admin/tokens/{prefix}/revoke': { POST: h },
    '/dashboard': { page: true, GET: h },
  })
  t.same(table.match('/v1/models')?.params, {})
  t.same(table.match('/v1/models/a/b:c')?.params, { id: 'a/b:c' }, 'a greedy parameter takes the rest, slashes included')
  t.equal(table.match('/v1/models/'), undefined, 'a parameter is never empty')
  t.same(table.match('/admin/providers/gpu-1/drain')?.params, { provider_id: 'gpu-1' })
  t.equal(table.match('/admin/providers/GPU/drain'), undefined, 'a failed check is an unknown path')
  t.equal(table.match('/admin/providers/a/b/drain'), undefined, 'a plain parameter is one segment')
  t.equal(table.match('/admin/tokens/abc/revoke/x'), undefined)
  t.equal(table.match('/admin/tokens//revoke'), undefined)
  t.equal(table.match('/v1/modelsx'), undefined, 'literal text is matched exactly')
  t.same(table.list(), [
    { method: 'GET', path: '/v1/models', page: false },
    { method: 'GET', path: '/v1/models/{id}', page: false },
    { method: 'POST', path: '/admin/providers/{provider_id}/drain', page: false },
    { method: 'POST', path: '/admin/tokens/{prefix}/revoke', page: false },
    { method: 'GET', path: '/dashboard', page: true },
  ])
})

t.test('template literal text is not a regular expression', async (t) => {
  const table = new RouteTable({ '/openapi.json': { GET: h }, '/a.b/{x}': { GET: h } })
  t.ok(table.match('/openapi.json'))
  t.equal(table.match('/openapiXjson'), undefined)
  t.equal(table.match('/aXb/1'), undefined)
  t.ok(table.match('/a.b/1'))
})

t.test('wrapRoute wraps every method and keeps the settings', async (t) => {
  const calls: string[] = []
  const wrapped = wrapRoute({ params: { id: /^x$/ }, greedy: true, GET: h, POST: h }, (inner) => (req, res, p) => {
    calls.push('wrapped')
    return inner(req, res, p)
  })
  t.same(Object.keys(wrapped).sort(), ['GET', 'POST', 'greedy', 'params'])
  await wrapped.GET?.({} as never, {} as never, {})
  await wrapped.POST?.({} as never, {} as never, {})
  t.same(calls, ['wrapped', 'wrapped'])
})

t.test('model ids in paths: decoded once, bounded', async (t) => {
  t.equal(decodeModelId('meta-llama%2FLlama-3-8B'), 'meta-llama/Llama-3-8B')
  t.equal(decodeModelId('meta-llama/Llama-3-8B'), 'meta-llama/Llama-3-8B')
  t.equal(decodeModelId('a%252Fb'), 'a%2Fb')
  t.equal(decodeModelId('a+b'), 'a+b', 'a + is not a space in a path')
  t.equal(decodeModelId('x'.repeat(256)), 'x'.repeat(256))
  for (const raw of ['', 'x'.repeat(257), '%', '%zz', '%C3%28', 'a%0Ab', 'a%7F', '%41'.repeat(2305)])
    t.equal(decodeModelId(raw), null, JSON.stringify(raw.slice(0, 20)))
})
