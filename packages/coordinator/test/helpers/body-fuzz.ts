/**
 * HTTP requests for the buyer-body fuzzer (test/integration/fuzz.test.ts), written as raw bytes,
 * and what the coordinator must answer each with. Chat requests get an exact expectation from
 * specs/buyer-api.md §1.1's checks, in their order; the other routes get the statuses their specs
 * allow. Every answer is also checked for shape by the test (a JSON error with a stable code).
 */
import { PROVIDER_ID_RE, encode, inferenceRequest } from '@poolcoord/protocol'
import { damage, jsonText, nested, oddNumber, oddString, oddValue, setField, type Rng } from './fuzz-rng.js'

export interface BodyTarget {
  /** Served by the answering provider, and by nobody else. */
  model: string
  /** The answering provider. */
  providerId: string
  maxBodyBytes: number
  operatorKey: string
}

export type BodyExpect =
  /** `code` null: a success, 200. */
  | { kind: 'exact'; status: number; code: string | null; stream: boolean }
  | { kind: 'one-of'; statuses: number[] }
  /** Not one well-formed HTTP request: the connection is closed, or answered without a 5xx. */
  | { kind: 'malformed' }

export interface BodyCase {
  label: string
  route: string
  request: Buffer
  expect: BodyExpect
}

/** The deepest body the buyer API parses (buyer-api.md §1.1). */
const MAX_BODY_DEPTH = 64

/** A header value as raw bytes: UTF-8 on the wire, read back by Node as latin1. */
function headerSafe(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f]/g, 'x')
}

function request(method: string, target: string, headers: string[], body: Buffer): Buffer {
  const head = [`${method} ${target} HTTP/1.1`, 'Host: coordinator', 'Connection: close', ...headers].join('\r\n')
  return Buffer.concat([Buffer.from(`${head}\r\n\r\n`, 'utf8'), body])
}

/** Percent-encodes every byte of `s`'s UTF-8 that is not unreserved. */
function pathEncode(s: string): string {
  return [...Buffer.from(s, 'utf8')]
    .map((b) => (/[A-Za-z0-9_.~-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).padStart(2, '0').toUpperCase()}`))
    .join('')
}

// ---- POST /v1/chat/completions ----

function validChat(rng: Rng, t: BodyTarget): Record<string, unknown> {
  const body: Record<string, unknown> = {
    model: rng.chance(0.8) ? t.model : rng.pick(['no-such-model', oddString(rng)]),
    messages: [{ role: 'user', content: rng.chance(0.7) ? 'hi' : oddString(rng) }],
  }
  const s = rng.int(10)
  if (s < 5) body.stream = s < 2
  else if (s === 5) body.stream = null
  if (rng.chance(0.3)) body.temperature = oddNumber(rng, [0, 2])
  if (rng.chance(0.2)) body.tools = oddValue(rng)
  return body
}

function mutateChat(rng: Rng, body: Record<string, unknown>): string {
  const ops: string[] = []
  for (let n = rng.range(1, 3); n > 0; n--) {
    const field = rng.pick(['model', 'messages', 'stream', 'other'])
    switch (rng.int(4)) {
      case 0:
        delete body[field]
        ops.push(`delete(${field})`)
        break
      case 1:
        body[field] = oddValue(rng)
        ops.push(`odd(${field})`)
        break
      case 2:
        body[field] = rng.pick([
          () => 'm'.repeat(rng.pick([255, 256, 257])),
          () => `${String(body[field] ?? 'm')}\u0001`,
          () => [],
          () => ({}),
          () => 'true',
          () => Array.from({ length: rng.pick([1, 1000]) }, () => ({ role: 'user', content: 'x' })),
        ])()
        ops.push(`edge(${field})`)
        break
      default:
        setField(body, rng.pick(['__proto__', 'constructor', 'n', oddString(rng).slice(0, 12)]), oddValue(rng))
        ops.push('unknown-field')
    }
  }
  return ops.join('+')
}

function chatBody(rng: Rng, t: BodyTarget): { bytes: Buffer; label: string } {
  const r = rng.int(100)
  if (r < 5) return { bytes: rng.bytes(rng.range(0, 200)), label: 'random-bytes' }
  if (r < 8)
    return { bytes: Buffer.from(rng.pick(['[]', '"x"', '1', 'null', 'true', '{}', '', ' ', '\ufeff{}', '{"model":"m","messages":[1]}x'])), label: 'non-object' }
  const base = validChat(rng, t)
  if (r < 11) {
    // The body is the first level: a field nested 63 deep is the deepest body accepted.
    base.x = nested(rng.pick([62, 63, 64, 65, 5000]), rng.chance(0.5) ? 'array' : 'object')
    return { bytes: Buffer.from(jsonText(base)), label: 'deep' }
  }
  if (r < 12) {
    const room = t.maxBodyBytes - Buffer.byteLength(jsonText({ ...base, pad: '' }))
    base.pad = 'p'.repeat(room + rng.pick([-1, 0, 1]))
    return { bytes: Buffer.from(jsonText(base)), label: 'size' }
  }
  let label = 'chat'
  if (rng.chance(0.55)) label += `/${mutateChat(rng, base)}`
  const bytes = Buffer.from(jsonText(base))
  if (!rng.chance(0.12)) return { bytes, label }
  const d = damage(rng, bytes)
  return { bytes: d.bytes, label: `${label}/${d.op}` }
}

function depth(v: unknown): number {
  if (v === null || typeof v !== 'object') return 0
  let max = 0
  for (const x of Object.values(v)) max = Math.max(max, depth(x))
  return 1 + max
}

/** buyer-api.md §1.1's checks in order, then routing (§3) in a pool where only the answering provider serves `t.model`. */
export function chatExpect(body: Buffer, pin: string | undefined, declaredTooLarge: boolean, t: BodyTarget): BodyExpect {
  const fail = (status: number, code: string): BodyExpect => ({ kind: 'exact', status, code, stream: false })
  if (pin !== undefined && !PROVIDER_ID_RE.test(pin)) return fail(400, 'invalid_request')
  if (declaredTooLarge || body.length > t.maxBodyBytes) return fail(413, 'request_too_large')
  let o: unknown
  try {
    o = JSON.parse(new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(body))
  } catch {
    return fail(400, 'invalid_json')
  }
  if (o === null || typeof o !== 'object' || Array.isArray(o) || depth(o) > MAX_BODY_DEPTH) return fail(400, 'invalid_json')
  const { model, messages, stream } = o as Record<string, unknown>
  if (typeof model !== 'string' || model.length === 0 || model.length > 256 || /[\u0000-\u001f\u007f]/.test(model)) return fail(400, 'invalid_request')
  if (!Array.isArray(messages) || messages.length === 0) return fail(400, 'invalid_request')
  if (stream !== undefined && stream !== null && typeof stream !== 'boolean') return fail(400, 'invalid_request')
  const frame = encode(inferenceRequest(`req-${'0'.repeat(36)}`, stream === true, body.toString('utf8')))
  if (Buffer.byteLength(frame) > 4 * 1024 * 1024) return fail(413, 'request_too_large')
  // §3: a model no session serves is not found, pinned or not; a pin to anyone else finds nobody available.
  if (model !== t.model) return fail(404, 'model_not_found')
  return pin === undefined || pin === t.providerId ? ok(stream === true) : fail(503, 'no_provider_available')
}

function ok(stream: boolean): BodyExpect {
  return { kind: 'exact', status: 200, code: null, stream }
}

/** What the server reads for an X-Pool-Provider value: latin1, surrounding blanks dropped. */
function seen(value: string): string {
  return Buffer.from(value, 'utf8')
    .toString('latin1')
    .replace(/^[ \t]+|[ \t]+$/g, '')
}

const JUNK_HEADERS = ['Content-Type', 'X-Request-Id', 'Authorization', 'Accept', 'User-Agent', 'Cookie', 'X-Forwarded-For', 'Accept-Encoding']

/** HTTP framings that Node's parser refuses: the connection is closed without an answer. */
const MALFORMED: Array<(body: Buffer) => Buffer> = [
  (b) => request('POST', '/v1/chat/completions', [`Content-Length: ${b.length}`, 'X-Bad: a\u0001b'], b),
  (b) => request('POST', '/v1/chat/completions', [`Content-Length: ${b.length}`, 'X Bad: 1'], b),
  (b) => request('POST', '/v1/chat/completions', [`Content-Length: ${b.length}`, 'Transfer-Encoding: chunked'], b),
  (b) => request('POST', '/v1/chat/completions', ['Content-Length: abc'], b),
  (b) => request('POST', '/v1/chat/completions', [`Content-Length: ${b.length}`, `Content-Length: ${b.length + 1}`], b),
  (b) => request('POST', '/v1/chat/completions', ['Transfer-Encoding: chunked'], Buffer.concat([Buffer.from('zz\r\n'), b])),
  (b) => request('POST', '/v1/chat/completions', [`Content-Length: ${b.length}`, `X-Big: ${'a'.repeat(17_000)}`], b),
  (b) => Buffer.concat([Buffer.from(`POST /v1/chat/completions HTTP/9.9\r\nContent-Length: ${b.length}\r\n\r\n`), b]),
  (b) => Buffer.concat([Buffer.from(`PO ST /v1/chat/completions HTTP/1.1\r\nContent-Length: ${b.length}\r\n\r\n`), b]),
  (b) => Buffer.concat([Buffer.from(`POST /v1/chat/completions HTTP/1.1\nHost: x\nConnection: close\nContent-Length: ${b.length}\n\n`), b]),
]

function chatCase(rng: Rng, t: BodyTarget): BodyCase {
  const { bytes, label } = chatBody(rng, t)
  if (rng.chance(0.04)) {
    const i = rng.int(MALFORMED.length)
    return { label: `malformed-http(${i})/${label}`, route: 'chat', request: (MALFORMED[i] as (b: Buffer) => Buffer)(bytes), expect: { kind: 'malformed' } }
  }
  const headers: string[] = []
  let pin: string | undefined
  const p = rng.int(100)
  if (p >= 70) {
    const values =
      p < 80
        ? [t.providerId]
        : p < 84
          ? ['nobody-here']
          : p < 87
            ? [t.providerId, t.providerId]
            : [headerSafe(rng.pick(['.', '..', ' ', 'a'.repeat(65), oddString(rng)]))]
    for (const v of values) headers.push(`X-Pool-Provider: ${v}`)
    pin = values.map(seen).join(', ')
  }
  for (let n = rng.int(3); n > 0; n--) headers.push(`${rng.pick(JUNK_HEADERS)}: ${headerSafe(oddString(rng))}`)
  let method = 'POST'
  let target = '/v1/chat/completions'
  let expectOverride: BodyExpect | null = null
  const m = rng.int(100)
  if (m < 3) {
    method = rng.pick(['GET', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'])
    expectOverride = { kind: 'exact', status: 405, code: 'COORD_METHOD_NOT_ALLOWED', stream: false }
  } else if (m < 6) {
    target = rng.pick(['/v1/chat/completions/', '/V1/chat/completions', '//v1/chat/completions', '/v1/chat//completions', '/v1/chat/completions%00'])
    expectOverride = { kind: 'exact', status: 404, code: 'COORD_NOT_FOUND', stream: false }
  } else if (m < 9) target = `/v1/chat/completions?${pathEncode(oddString(rng))}=1`
  const f = rng.int(100)
  let payload = bytes
  let declaredTooLarge = false
  let framing: string
  if (f < 85) {
    headers.push(`Content-Length: ${bytes.length}`)
    framing = 'length'
  } else if (f < 93) {
    headers.push('Transfer-Encoding: chunked')
    const parts: Buffer[] = []
    for (let at = 0; at < bytes.length;) {
      const n = Math.min(bytes.length - at, rng.range(1, 4096))
      parts.push(Buffer.from(`${n.toString(16)}\r\n`), bytes.subarray(at, at + n), Buffer.from('\r\n'))
      at += n
    }
    payload = Buffer.concat([...parts, Buffer.from('0\r\n\r\n')])
    framing = 'chunked'
  } else if (f < 96) {
    // Refused on the declared length before a byte of the body is read.
    headers.push(`Content-Length: ${t.maxBodyBytes + rng.pick([1, 10_000_000])}`)
    payload = bytes.subarray(0, 64)
    declaredTooLarge = true
    framing = 'declared-too-large'
  } else if (f < 98) {
    headers.push(`Content-Length: ${bytes.length}`, 'Expect: 100-continue')
    framing = 'expect-continue'
  } else {
    payload = Buffer.alloc(0)
    framing = 'no-body'
  }
  const expect = expectOverride ?? chatExpect(framing === 'no-body' ? payload : bytes, pin, declaredTooLarge, t)
  // Only requests that reach the handler carry X-Request-Id: a 404 or 405 is the router's.
  const route = expectOverride === null ? 'chat' : 'chat-misrouted'
  return { label: `${method} ${framing}/${label}`, route, request: request(method, target, headers, payload), expect }
}

// ---- the other routes ----

function jsonRequest(path: string, body: Buffer, key: string | null): Buffer {
  const auth = key === null ? [] : [`Authorization: Bearer ${key}`]
  return request('POST', path, [...auth, 'Content-Type: application/json', `Content-Length: ${body.length}`], body)
}

function fuzzedJson(rng: Rng, base: Record<string, unknown>): { bytes: Buffer; label: string } {
  let label = 'valid'
  if (rng.chance(0.6)) {
    const key = rng.pick([...Object.keys(base), 'x'])
    base[key] = rng.chance(0.5) ? oddValue(rng) : oddNumber(rng, [86_400])
    label = `odd(${key})`
  }
  const bytes = Buffer.from(jsonText(base))
  if (!rng.chance(0.15)) return { bytes, label }
  const d = damage(rng, bytes)
  return { bytes: d.bytes, label: `${label}/${d.op}` }
}

function otherCase(rng: Rng, t: BodyTarget): BodyCase {
  const key = rng.chance(0.85) ? t.operatorKey : null
  const unauthorized: BodyExpect = { kind: 'exact', status: 401, code: 'COORD_UNAUTHORIZED', stream: false }
  switch (rng.int(7)) {
    case 0:
      return { label: 'models', route: 'models', request: request('GET', '/v1/models', [], Buffer.alloc(0)), expect: ok(false) }
    case 1: {
      const id = rng.pick([t.model, 'no-such-model', '', oddString(rng)])
      const raw = rng.chance(0.8) ? pathEncode(id) : rng.pick(['%zz', '%ff%fe', 'a%2', `${'%41'.repeat(800)}`, 'meta/llama:8b'])
      const expect: BodyExpect = raw === pathEncode(t.model) ? ok(false) : { kind: 'one-of', statuses: [404] }
      return { label: 'model', route: 'model', request: request('GET', `/v1/models/${raw}`, [], Buffer.alloc(0)), expect }
    }
    case 2: {
      const { bytes, label } = fuzzedJson(rng, { provider_id: `fzt-${rng.int(1000)}`, name: 'fuzz' })
      const expect: BodyExpect = key === null ? unauthorized : { kind: 'one-of', statuses: [201, 400, 409] }
      return { label: `tokens/${label}`, route: 'admin-tokens', request: jsonRequest('/admin/tokens', bytes, key), expect }
    }
    case 3: {
      const { bytes, label } = fuzzedJson(rng, { older_than_s: 86_400, apply: rng.chance(0.5) })
      const expect: BodyExpect = key === null ? unauthorized : { kind: 'one-of', statuses: [200, 400] }
      return { label: `prune/${label}`, route: 'admin-prune', request: jsonRequest('/admin/tokens/prune', bytes, key), expect }
    }
    case 4: {
      const id = rng.chance(0.7) ? `fzc-${rng.int(100)}` : pathEncode(oddString(rng))
      const { bytes, label } = fuzzedJson(rng, { reason: 'fuzz' })
      const expect: BodyExpect = key === null ? { kind: 'one-of', statuses: [401, 404] } : { kind: 'one-of', statuses: [200, 400, 404] }
      return { label: `cordon/${label}`, route: 'admin-cordon', request: jsonRequest(`/admin/providers/${id}/cordon`, bytes, key), expect }
    }
    case 5: {
      const age = pathEncode(String(rng.chance(0.5) ? oddNumber(rng, [86_400]) : oddString(rng)))
      const auth = key === null ? [] : [`Authorization: Bearer ${key}`]
      const expect: BodyExpect = key === null ? unauthorized : { kind: 'one-of', statuses: [200, 400] }
      return {
        label: 'audit',
        route: 'admin-audit',
        request: request('GET', `/admin/audit/pre-flip?max_last_used_age_s=${age}`, auth, Buffer.alloc(0)),
        expect,
      }
    }
    default: {
      const nonce = rng.chance(0.5) ? rng.bytes(32).toString('hex') : pathEncode(oddString(rng))
      return {
        label: 'operator-proof',
        route: 'operator-proof',
        request: request('GET', `/operator-proof?nonce=${nonce}`, [], Buffer.alloc(0)),
        expect: { kind: 'one-of', statuses: [200, 400] },
      }
    }
  }
}

/** One request: mostly chat completions, the rest spread over the buyer and operator routes that read input. */
export function bodyCase(rng: Rng, t: BodyTarget): BodyCase {
  return rng.chance(0.8) ? chatCase(rng, t) : otherCase(rng, t)
}
