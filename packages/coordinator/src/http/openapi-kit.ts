import { CoordinatorError, toPublicError } from '../errors.js'

/** A JSON Schema 2020-12 object, as OpenAPI 3.1 embeds it. */
export type Schema = Record<string, unknown>

/** The keys of T that may be absent (`k?:`). */
type OptionalKeys<T> = { [K in keyof T]-?: object extends Pick<T, K> ? K : never }[keyof T]

const described = (description: string | undefined): Schema => (description === undefined ? {} : { description })

export const str = (description?: string, extra: Schema = {}): Schema => ({ type: 'string', ...described(description), ...extra })
export const int = (description?: string, extra: Schema = {}): Schema => ({ type: 'integer', minimum: 0, ...described(description), ...extra })
export const bool = (description?: string): Schema => ({ type: 'boolean', ...described(description) })
export const time = (description?: string): Schema => str(description, { format: 'date-time' })
export const oneOfValues = (values: readonly string[], description?: string): Schema => ({ type: 'string', enum: [...values], ...described(description) })
export const arrayOf = (items: Schema, description?: string): Schema => ({ type: 'array', items, ...described(description) })
export const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` })

/** The same schema, or null. Only for schemas with a single `type`. */
export function nullable(s: Schema): Schema {
  if (typeof s.type !== 'string') throw new Error('nullable() takes a schema with one type')
  return { ...s, type: [s.type, 'null'], ...(Array.isArray(s.enum) ? { enum: [...s.enum, null] } : {}) }
}

/**
 * An object schema checked against a TypeScript type at compile time: every key of T must be
 * described and no other, so a field added to a response type without a description fails the
 * typecheck. No other key is allowed at run time (`additionalProperties: false`), so the test
 * that validates real responses fails on a field the type does not know either.
 */
export function obj<T>(properties: { [K in keyof T]-?: Schema }, opts: { optional?: ReadonlyArray<OptionalKeys<T>>; description?: string } = {}): Schema {
  const optional = new Set<unknown>(opts.optional ?? [])
  return {
    type: 'object',
    ...described(opts.description),
    required: Object.keys(properties).filter((k) => !optional.has(k)),
    properties,
    additionalProperties: false,
  }
}

export interface Header {
  description: string
  schema: Schema
}

/** A JSON response. */
export function json(description: string, schema: Schema, headers?: Record<string, Header | Schema>): Schema {
  return { description, ...(headers === undefined ? {} : { headers }), content: { 'application/json': { schema } } }
}

/**
 * Error responses for the given codes, grouped by status. Statuses and `type`s come from
 * toPublicError, the one mapping the handlers use, so the document cannot disagree with them.
 * `COORD_INTERNAL`, the answer to anything unexpected, is added to every list.
 */
export function errors(codes: readonly string[], headers: (status: number) => Record<string, Header | Schema> = () => ({})): Record<string, Schema> {
  const byStatus = new Map<number, { type: string; codes: string[] }>()
  for (const code of [...codes, 'COORD_INTERNAL']) {
    const pub = toPublicError(code === 'COORD_INTERNAL' ? null : new CoordinatorError(code, ''))
    if (pub.body.error.code !== code) throw new Error(`${code} is not a public error code`)
    const entry = byStatus.get(pub.status) ?? { type: pub.body.error.type, codes: [] }
    entry.codes.push(code)
    byStatus.set(pub.status, entry)
  }
  const out: Record<string, Schema> = {}
  for (const [status, { type, codes: list }] of [...byStatus].sort(([a], [b]) => a - b)) {
    const schema = {
      type: 'object',
      required: ['error'],
      additionalProperties: false,
      properties: {
        error: {
          type: 'object',
          required: ['message', 'type', 'code'],
          additionalProperties: false,
          properties: { message: str('fixed text; never echoes input'), type: { const: type }, code: { enum: list } },
        },
      },
    }
    const extra: Record<string, Schema> = status === 401 ? { 'WWW-Authenticate': { $ref: '#/components/headers/WWWAuthenticate' } } : {}
    out[String(status)] = json(`error: ${list.map((c) => `\`${c}\``).join(', ')}`, schema, { ...extra, ...headers(status) })
  }
  return out
}
