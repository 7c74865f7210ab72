import { Validator } from '@seriousme/openapi-schema-validator'
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js'

type Json = Record<string, unknown>
export type OpenApiDoc = Json & { paths: Record<string, Record<string, Json>>; info: { version: string } }

export const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const

/** Every operation of a document, as `METHOD /template`. */
export function documentedOperations(doc: OpenApiDoc): Array<{ key: string; method: string; path: string; op: Json }> {
  return Object.entries(doc.paths).flatMap(([path, item]) =>
    HTTP_METHODS.filter((m) => item[m] !== undefined).map((m) => ({ key: `${m.toUpperCase()} ${path}`, method: m.toUpperCase(), path, op: item[m] as Json })),
  )
}

/**
 * Checks a document against the OpenAPI 3.1 JSON Schema (and that every $ref resolves), then
 * returns a checker of response bodies against the documented schemas, refs resolved.
 */
export async function loadOpenApi(doc: unknown): Promise<{ valid: boolean; errors: unknown; response: ResponseChecker }> {
  const validator = new Validator()
  const result = await validator.validate(structuredClone(doc) as Json)
  const resolved = (result.valid ? validator.resolveRefs() : doc) as OpenApiDoc
  return { valid: result.valid, errors: result.errors, response: new ResponseChecker(resolved) }
}

/** Validates real responses against the document: the status must be documented, and the body must fit. */
export class ResponseChecker {
  private readonly ajv = new Ajv2020({
    strict: true,
    allErrors: true,
    allowUnionTypes: true,
    // The coordinator writes Date.toISOString(): UTC, milliseconds.
    formats: { 'date-time': /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/ },
  })
  private readonly compiled = new Map<object, ValidateFunction>()

  constructor(readonly doc: OpenApiDoc) {}

  /** null when the response fits the document; otherwise why not. */
  async check(method: string, template: string, res: Response): Promise<string | null> {
    const op = this.doc.paths[template]?.[method.toLowerCase()] as Json | undefined
    if (op === undefined) return `${method} ${template} is not documented`
    const documented = (op.responses as Record<string, Json>)[String(res.status)]
    if (documented === undefined) return `${method} ${template}: status ${res.status} is not documented`
    const content = documented.content as Record<string, { schema: Json }> | undefined
    const type = (res.headers.get('content-type') ?? '').toLowerCase()
    if (content === undefined) return type === '' ? null : `${method} ${template} ${res.status}: a body where none is documented`
    const media = Object.keys(content).find((m) => type === m || type.split(';')[0] === m.split(';')[0])
    if (media === undefined) return `${method} ${template} ${res.status}: content-type ${type} is not documented`
    for (const [name, header] of Object.entries((documented.headers ?? {}) as Record<string, Json>)) {
      if (header.required === true && !res.headers.has(name)) return `${method} ${template} ${res.status}: required header ${name} missing`
    }
    if (!media.startsWith('application/json')) return null
    const schema = (content[media] as { schema: Json }).schema
    let validate = this.compiled.get(schema)
    if (validate === undefined) {
      validate = this.ajv.compile(schema)
      this.compiled.set(schema, validate)
    }
    const body: unknown = await res.clone().json()
    return validate(body) ? null : `${method} ${template} ${res.status}: ${this.ajv.errorsText(validate.errors)} in ${JSON.stringify(body).slice(0, 300)}`
  }
}
