import { PROVIDER_ID_RE } from '../tokens/token.js'
import { Close, withField, type CloseSpec } from './close-codes.js'

/**
 * Parsing and bounds for the provider frames of protocol v1 (specs/protocol.md). Pure: a frame
 * is either a typed value or the close to send. Unknown fields are ignored so that newer
 * provider binaries keep working; every known field is bounded.
 */
export const PROTOCOL_VERSION = 1
export const MAX_MODELS = 64
export const MAX_CONCURRENCY = 256
export const MAX_SLOTS = 1024

export interface Hello {
  providerId: string
  hostname: string
  modelId: string
  binaryVersion: string
  maxConcurrency: number
  maxContextTokens: number
  /** model_id first, then supported_models, without duplicates. */
  models: string[]
  throughputTps: number | null
}

export type ProviderStatus = 'ready' | 'busy' | 'draining' | 'degraded' | 'unavailable'
const STATUSES: readonly ProviderStatus[] = ['ready', 'busy', 'draining', 'degraded', 'unavailable']

export interface Heartbeat {
  status: ProviderStatus
  slotsFree: number
  slotsTotal: number
  /** Present only when the heartbeat reports models. */
  models?: string[]
}

export type Parsed<T> = { ok: true; value: T } | { ok: false; close: CloseSpec }

export function decodeJson(data: Buffer | string): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(typeof data === 'string' ? data : data.toString('utf8'))
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null
  } catch {
    return null
  }
}

export function parseHello(msg: Record<string, unknown> | null): Parsed<Hello> {
  if (msg === null || msg.type !== 'hello') return { ok: false, close: Close.notHello }
  if (msg.version !== PROTOCOL_VERSION) {
    return typeof msg.version === 'number'
      ? { ok: false, close: Close.unsupportedVersion }
      : bad('version')
  }
  const providerId = msg.provider_id
  if (typeof providerId !== 'string' || !PROVIDER_ID_RE.test(providerId)) return bad('provider_id')
  const hostname = str(msg.hostname, 253)
  if (hostname === null) return bad('hostname')
  const modelId = str(msg.model_id, 256)
  if (modelId === null) return bad('model_id')
  const binaryVersion = str(msg.binary_version, 64)
  if (binaryVersion === null) return bad('binary_version')
  const maxConcurrency = int(msg.max_concurrency, 1, MAX_CONCURRENCY)
  if (maxConcurrency === null) return bad('max_concurrency')
  const maxContextTokens = int(msg.max_context_tokens, 1, 100_000_000)
  if (maxContextTokens === null) return bad('max_context_tokens')
  const supported = msg.supported_models === undefined ? [] : modelList(msg.supported_models)
  if (supported === null) return bad('supported_models')
  const models = [...new Set([modelId, ...supported])]
  if (models.length > MAX_MODELS) return bad('supported_models')
  let throughputTps: number | null = null
  if (msg.throughput_tps_estimate !== undefined && msg.throughput_tps_estimate !== null) {
    const v = msg.throughput_tps_estimate
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 1e6) {
      return bad('throughput_tps_estimate')
    }
    throughputTps = v
  }
  return {
    ok: true,
    value: { providerId, hostname, modelId, binaryVersion, maxConcurrency, maxContextTokens, models, throughputTps },
  }

  function bad(field: string): Parsed<Hello> {
    return { ok: false, close: withField(Close.invalidHello, field) }
  }
}

export function parseHeartbeat(msg: Record<string, unknown>): Parsed<Heartbeat> {
  const status = msg.status
  if (typeof status !== 'string' || !STATUSES.includes(status as ProviderStatus)) return bad('status')
  const slotsTotal = int(msg.slots_total, 0, MAX_SLOTS)
  if (slotsTotal === null) return bad('slots_total')
  const slotsFree = int(msg.slots_free, 0, slotsTotal)
  if (slotsFree === null) return bad('slots_free')
  const value: Heartbeat = { status: status as ProviderStatus, slotsFree, slotsTotal }
  if (msg.model_id !== undefined || msg.supported_models !== undefined) {
    const modelId = msg.model_id === undefined ? null : str(msg.model_id, 256)
    if (msg.model_id !== undefined && modelId === null) return bad('model_id')
    const supported = msg.supported_models === undefined ? [] : modelList(msg.supported_models)
    if (supported === null) return bad('supported_models')
    const models = [...new Set([...(modelId === null ? [] : [modelId]), ...supported])]
    if (models.length === 0 || models.length > MAX_MODELS) return bad('supported_models')
    value.models = models
  }
  return { ok: true, value }

  function bad(field: string): Parsed<Heartbeat> {
    return { ok: false, close: withField(Close.invalidFrame, field) }
  }
}

function str(v: unknown, max: number): string | null {
  return typeof v === 'string' && v.length >= 1 && v.length <= max && !/[\u0000-\u001f\u007f]/.test(v)
    ? v
    : null
}

function int(v: unknown, min: number, max: number): number | null {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max ? v : null
}

function modelList(v: unknown): string[] | null {
  if (!Array.isArray(v) || v.length > MAX_MODELS) return null
  const out: string[] = []
  for (const m of v) {
    const s = str(m, 256)
    if (s === null) return null
    out.push(s)
  }
  return out
}
