import { modelSet, type HeartbeatMessage, type HelloFields, type ProviderStatus } from '@poolcoord/protocol'

/**
 * What a provider reports about itself, as the pool keeps it: the parsed wire messages
 * (@poolcoord/protocol) turned into the pool's plain data. The parsers have already bounded
 * every field.
 */
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

export interface Heartbeat {
  status: ProviderStatus
  slotsFree: number
  slotsTotal: number
  /** Present only when the heartbeat reports models. */
  models?: string[]
}

export function helloOf(m: HelloFields): Hello {
  return {
    providerId: m.provider_id,
    hostname: m.hostname,
    modelId: m.model_id,
    binaryVersion: m.binary_version,
    maxConcurrency: m.max_concurrency,
    maxContextTokens: m.max_context_tokens,
    models: modelSet(m.model_id, m.supported_models),
    throughputTps: m.throughput_tps_estimate ?? null,
  }
}

export function heartbeatOf(m: HeartbeatMessage): Heartbeat {
  const hb: Heartbeat = { status: m.status, slotsFree: m.slots_free, slotsTotal: m.slots_total }
  if (m.model_id !== undefined || m.supported_models !== undefined) hb.models = modelSet(m.model_id, m.supported_models)
  return hb
}
