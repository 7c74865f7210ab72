import type { ProviderSession } from '../../src/pool/provider-session.js'

/** A ready self-minted session with 4 free slots; override what a test is about. */
export function makeSession(over: Partial<ProviderSession> = {}): ProviderSession {
  return {
    providerId: 'mac-1',
    assignedId: 'a-1',
    authState: 'self_minted',
    tokenPrefix: null,
    identity: null,
    hostname: 'mac.local',
    binaryVersion: '1.0.0',
    modelId: 'llama',
    models: ['llama'],
    maxConcurrency: 4,
    maxContextTokens: 8192,
    throughputTps: null,
    status: 'ready',
    slotsFree: 4,
    slotsTotal: 4,
    inFlight: 0,
    consecutiveFailures: 0,
    cooldownUntil: 0,
    drainRequested: false,
    cordoned: false,
    connectedAt: 100,
    lastHeartbeatAt: null,
    lastInboundAt: 100,
    ...over,
  }
}
