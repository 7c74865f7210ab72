import { readFileSync } from 'node:fs'
import t from 'tap'
import * as errors from '../../src/errors.js'

const spec = readFileSync(new URL('../../../../specs/errors.md', import.meta.url), 'utf8')

t.test('every error class and code is documented in specs/errors.md', async (t) => {
  const classes = Object.entries(errors).filter(
    ([name, v]) => typeof v === 'function' && name !== 'CoordinatorError' && v.prototype instanceof errors.CoordinatorError,
  )
  t.ok(classes.length >= 8, `found ${classes.length} error classes`)
  for (const [name] of classes) t.match(spec, `\`${name}\``, `${name} is in the table`)
  const codes = [...readFileSync(new URL('../../src/errors.ts', import.meta.url), 'utf8').matchAll(/'(COORD_[A-Z_]+)'/g)].map((m) => m[1])
  for (const code of new Set(codes)) t.match(spec, `\`${code}\``, `${code} is in the table`)
  for (const [code, status] of Object.entries(errors.httpStatus)) {
    t.match(spec, new RegExp(`\\| \`${code}\` \\| [^|]+ \\| ${status} \\|`), `${code} is in a table row with HTTP ${status}`)
  }
})

t.test('toPublicError hides internals', async (t) => {
  const internal = errors.toPublicError(new Error('relation "provider_tokens" does not exist'))
  t.same(internal, { status: 500, body: { error: { message: 'internal error', type: 'server_error', code: 'COORD_INTERNAL' } } })
  const store = errors.toPublicError(new errors.StoreUnavailableError(new Error('secret detail')))
  t.equal(store.status, 503)
  t.equal(store.body.error.message, 'service temporarily unavailable')
  t.equal(store.body.error.code, 'COORD_STORE_UNAVAILABLE')
  const auth = errors.toPublicError(new errors.UnauthorizedError())
  t.same([auth.status, auth.body.error.type], [401, 'authentication_error'])
  t.equal(errors.toPublicError(new errors.TokenPrefixAmbiguousError()).status, 409)
})
