/** Field checks shared by both parsers. Pure; each returns the value, or null when out of bounds. */
import { MAX_MODELS, MAX_TEXT_FIELD, MAX_TOKEN_COUNT, REQUEST_ID_MAX } from './bounds.js'
import type { Usage } from './messages.js'

export type Json = Record<string, unknown>

const CONTROL_RE = /[\u0000-\u001f\u007f]/

/** Parses one text frame; only a JSON object is a message. */
export function decodeJson(data: Buffer | string): Json | null {
  try {
    const v: unknown = JSON.parse(typeof data === 'string' ? data : data.toString('utf8'))
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : null
  } catch {
    return null
  }
}

export function text(v: unknown, max: number): string | null {
  return typeof v === 'string' && v.length >= 1 && v.length <= max && !CONTROL_RE.test(v) ? v : null
}

export function int(v: unknown, min: number, max: number): number | null {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max ? v : null
}

export function modelList(v: unknown): string[] | null {
  if (!Array.isArray(v) || v.length > MAX_MODELS) return null
  const out: string[] = []
  for (const m of v) {
    const s = text(m, MAX_TEXT_FIELD)
    if (s === null) return null
    out.push(s)
  }
  return out
}

/** A provider's model set: model_id first, then supported_models, without duplicates. */
export function modelSet(modelId: string | undefined, supported: readonly string[] | undefined): string[] {
  return [...new Set([...(modelId === undefined ? [] : [modelId]), ...(supported ?? [])])]
}

export function requestId(v: unknown): string | null {
  return typeof v === 'string' && v.length > 0 && v.length <= REQUEST_ID_MAX ? v : null
}

/**
 * The token counts of an OpenAI `usage` object or of an end frame's `usage`. Usage is
 * informational: a malformed one is dropped (null) rather than failing a good answer.
 */
export function parseUsage(v: unknown): Usage | null {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return null
  const u = v as Json
  const p = int(u.prompt_tokens, 0, MAX_TOKEN_COUNT)
  const c = int(u.completion_tokens, 0, MAX_TOKEN_COUNT)
  if (p === null || c === null) return null
  return { prompt_tokens: p, completion_tokens: c, total_tokens: int(u.total_tokens, 0, MAX_TOKEN_COUNT) ?? p + c }
}

/** A provider error code trimmed to a log-safe token, from `{code}` or a bare string. */
export function errorCode(v: unknown): string | null {
  const code = v !== null && typeof v === 'object' ? (v as Json).code : v
  return typeof code === 'string' && /^[A-Za-z0-9_.:-]{1,64}$/.test(code) ? code : null
}
