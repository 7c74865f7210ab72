import { InvalidJsonError } from '../errors.js'

/** Parses a request body that must be one JSON object; anything else is `invalid_json`. */
export function parseJsonObject(text: string): Record<string, unknown> {
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch {
    throw new InvalidJsonError()
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new InvalidJsonError()
  return v as Record<string, unknown>
}
