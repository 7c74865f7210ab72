import t from 'tap'
import { createHttpHandler } from '../../src/http/http-handler.js'
import { VERSION } from '../../src/version.js'
import { documentedOperations, loadOpenApi, type OpenApiDoc } from '../helpers/openapi.js'
import { OPERATOR_KEY, startTestService, type TestService } from '../helpers/service.js'
import { generateIdentityKey, keyJoin } from '../helpers/key-client.js'
import { TestProvider, answer } from '../helpers/test-provider.js'

const auth = { authorization: `Bearer ${OPERATOR_KEY}` }

async function fetchDoc(s: TestService): Promise<{ res: Response; doc: OpenApiDoc }> {
  const res = await fetch(`${s.url}/openapi.json`)
  return { res, doc: (await res.clone().json()) as OpenApiDoc }
}

t.test('/openapi.json is public, uncached, OpenAPI 3.1 that a validator accepts, at this version', async (t) => {
  const s = await startTestService(t)
  const { res, doc } = await fetchDoc(s)
  t.equal(res.status, 200)
  t.equal(res.headers.get('cache-control'), 'no-store')
  t.match(res.headers.get('content-type'), /^application\/json/)
  t.equal(doc.openapi, '3.1.0')
  t.equal(doc.info.version, VERSION)
  const { valid, errors } = await loadOpenApi(doc)
  t.ok(valid, 'valid against the OpenAPI 3.1 schema, every $ref resolved')
  if (!valid) t.comment(JSON.stringify(errors, null, 2).slice(0, 4000))
})

t.test('the document describes exactly the routes the router serves', async (t) => {
  const s = await startTestService(t)
  const { doc } = await fetchDoc(s)
  // The table the service's router dispatches with, built the same way.
  const served = createHttpHandler(s.svc.ctx, { draining: () => false }).routes
  const api = served.filter((r) => !r.page).map((r) => `${r.method} ${r.path}`)
  const documented = documentedOperations(doc).map((o) => o.key)
  for (const key of api)
    if (!documented.includes(key)) t.fail(`served but not documented: ${key} (describe it in src/http/openapi-*.ts, or flag a page for people with page: true)`)
  for (const key of documented) if (!api.includes(key)) t.fail(`documented but not served: ${key}`)
  t.same([...documented].sort(), [...api].sort(), 'the same operations')
  for (const page of served.filter((r) => r.page)) t.notOk(doc.paths[page.path], `${page.path} is a page, not API`)
})

t.test('every documented operation answers as documented on a running coordinator', async (t) => {
  const s = await startTestService(t)
  await TestProvider.join(s.wsUrl, 'probe-a', { handler: answer() })
  // Another model, so that the chat probe never lands on a provider that does not answer.
  await TestProvider.join(s.wsUrl, 'probe-drain', { hello: { model_id: 'idle-model' } })
  await TestProvider.join(s.wsUrl, 'probe-kick', { hello: { model_id: 'idle-model' } })
  const issued = await fetch(`${s.url}/admin/tokens`, { method: 'POST', headers: auth, body: JSON.stringify({ provider_id: 'probe-revoke' }) })
  const { token_prefix: prefix } = (await issued.json()) as { token_prefix: string }
  // A pinned identity key, live, for revokeIdentity (which kicks it) and then resetIdentity.
  const pinned = await keyJoin(s.wsUrl, 'probe-key', generateIdentityKey(), { intent: 'enroll' })
  t.equal(pinned.ack?.auth_state, 'key_proven')
  const { doc } = await fetchDoc(s)
  const { response } = await loadOpenApi(doc)

  // Values that make each operation succeed; the defaults apply unless the operation names its own.
  const pathValues: Record<string, Record<string, string>> = {
    default: { id: 'test-model', provider_id: 'probe-cordoned', prefix },
    drain: { provider_id: 'probe-drain' },
    kick: { provider_id: 'probe-kick' },
    revokeIdentity: { provider_id: 'probe-key' },
    resetIdentity: { provider_id: 'probe-key' },
  }
  /** Query strings an operation requires. */
  const queries: Record<string, string> = { operatorProof: `?nonce=${'ab'.repeat(32)}` }
  const bodies: Record<string, unknown> = {
    createChatCompletion: { model: 'test-model', messages: [{ role: 'user', content: 'hi' }] },
    issueToken: { provider_id: 'probe-issued', name: 'probe' },
    pruneTokens: { older_than_s: 86_400 },
    revokeToken: { kick: false },
    cordon: { reason: 'probe' },
  }

  const ops = documentedOperations(doc)
  t.ok(ops.length >= 17, `${ops.length} operations`)
  for (const { key, method, path, op } of ops) {
    const id = op.operationId as string
    const url = path.replace(/\{([a-z_]+)\}/g, (_m, name: string) => {
      const v = pathValues[id]?.[name] ?? pathValues.default?.[name]
      if (v === undefined) throw new Error(`${key}: no probe value for {${name}}; add one to pathValues`)
      return encodeURIComponent(v)
    })
    const requestBody = op.requestBody as { required?: boolean; content: Record<string, { schema: { required?: string[] } }> } | undefined
    const needsBody =
      requestBody !== undefined && (requestBody.required === true || (requestBody.content['application/json']?.schema.required ?? []).length > 0)
    if (needsBody && !(id in bodies)) throw new Error(`${key}: no probe body for ${id}; add one to bodies`)
    const security = op.security as Array<Record<string, unknown>> | undefined
    const operatorOnly = security !== undefined && security.length > 0 && security.every((req) => 'operatorKey' in req)
    const send = (headers: Record<string, string>) =>
      fetch(`${s.url}${url}${queries[id] ?? ''}`, {
        method,
        headers: { ...headers, ...(id in bodies ? { 'content-type': 'application/json' } : {}) },
        body: id in bodies ? JSON.stringify(bodies[id]) : undefined,
      })

    if (operatorOnly) {
      const refused = await send({})
      t.equal(refused.status, 401, `${key}: the operator key is required`)
      t.equal(await response.check(method, path, refused), null, `${key}: 401 as documented`)
    }
    const res = await send(security === undefined || security.length === 0 ? {} : auth)
    const code = res.status === 404 ? ((await res.clone().json()) as { error?: { code?: string } }).error?.code : undefined
    t.not(code, 'COORD_NOT_FOUND', `${key}: the route exists`)
    t.not(res.status, 405, `${key}: the method is served`)
    t.ok(res.status >= 200 && res.status < 300, `${key}: succeeds with a valid request (got ${res.status})`)
    t.equal(await response.check(method, path, res), null, `${key}: the answer fits the document`)
  }
  // The other documented success of the chat operation: an SSE stream, pinned with the documented header.
  const stream = await fetch(`${s.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-pool-provider': 'probe-a' },
    body: JSON.stringify({ ...(bodies.createChatCompletion as object), stream: true }),
  })
  t.equal(stream.status, 200)
  t.equal(await response.check('POST', '/v1/chat/completions', stream), null, 'a stream fits the document')
  t.match(await stream.text(), /data: \[DONE\]/)
})

t.test('error answers fit the documented envelopes and codes', async (t) => {
  const s = await startTestService(t)
  const { doc } = await fetchDoc(s)
  const { response } = await loadOpenApi(doc)
  const cases: Array<[string, string, string, RequestInit, number]> = [
    ['POST', '/v1/chat/completions', '/v1/chat/completions', { body: '{"model":' }, 400],
    ['POST', '/v1/chat/completions', '/v1/chat/completions', { body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'x' }] }) }, 503],
    ['GET', '/v1/models/{id}', '/v1/models/nobody-serves-this', {}, 404],
    ['POST', '/admin/tokens', '/admin/tokens', { headers: auth, body: JSON.stringify({ provider_id: 'bad id' }) }, 400],
    ['POST', '/admin/tokens/prune', '/admin/tokens/prune', { headers: auth, body: JSON.stringify({ older_than_s: 60 }) }, 400],
    ['POST', '/admin/tokens/{prefix}/revoke', '/admin/tokens/abcdef/revoke', { headers: auth }, 404],
    ['POST', '/admin/providers/{provider_id}/drain', '/admin/providers/not-here/drain', { headers: auth }, 404],
    ['POST', '/admin/providers/{provider_id}/kick', '/admin/providers/bad%20id/kick', { headers: auth }, 404],
    ['GET', '/admin/audit/pre-flip', '/admin/audit/pre-flip?max_last_used_age_s=-1', { headers: auth }, 400],
    ['POST', '/admin/identities/{provider_id}/revoke', '/admin/identities/nobody/revoke', { headers: auth }, 404],
    ['POST', '/admin/identities/{provider_id}/reset', '/admin/identities/bad%20id/reset', { headers: auth }, 400],
  ]
  for (const [method, template, url, init, status] of cases) {
    const res = await fetch(`${s.url}${url}`, { method, ...init })
    t.equal(res.status, status, `${method} ${url}`)
    t.equal(await response.check(method, template, res), null, `${method} ${url}: documented`)
  }
})
