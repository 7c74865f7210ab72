import type { AuthState, FailureReason, ProviderStatus } from '@poolcoord/protocol'

/** One admitted connection, as plain data. Times are clock milliseconds. */
export interface ProviderSession {
  providerId: string
  /** New for every connection; every mutation is keyed by it as well as by providerId. */
  assignedId: string
  authState: AuthState
  /** First 12 hex characters of the session's token, if it has one; never more. */
  tokenPrefix: string | null
  /** Identity v2: the pinned key this session proved (a fingerprint, never the key); null when it proved none. */
  identity: { generation: number; keyFingerprint: string } | null
  hostname: string
  binaryVersion: string
  modelId: string
  models: string[]
  maxConcurrency: number
  maxContextTokens: number
  throughputTps: number | null
  status: ProviderStatus
  slotsFree: number
  slotsTotal: number
  /** Requests the coordinator has dispatched to this session and not yet seen end. */
  inFlight: number
  /** Failed attempts in a row (routing/provider-health.ts); 0 after a complete answer. */
  consecutiveFailures: number
  /** Clock ms until which selection ranks this session below healthy ones; 0 when healthy. */
  cooldownUntil: number
  /** The failure that last started or extended the cooldown; absent or null while consecutiveFailures is 0. */
  lastFailure?: FailureReason | null
  /** Clock ms of the first failure of the current run (pool/ejection-cap.ts orders by it); absent or 0 while healthy. */
  failingSince?: number
  /** The coordinator asked it to drain (operator or shutdown). Its heartbeats cannot undo this. */
  drainRequested: boolean
  /** An operator cordoned this provider_id: connected, never routable, until uncordoned. */
  cordoned: boolean
  /**
   * Cluster mode: the node that holds the socket (this node's id for its own sessions); absent in
   * single-node mode. A session of another node is a copy from that node's pool snapshot.
   */
  nodeId?: string
  /**
   * Cluster mode: not routable yet, or no longer. A local session waits for the node that held
   * the provider before it to let go (specs/cluster.md §7.4); another node's session is not the
   * one its provider_id's lease names as active.
   */
  leasePending?: boolean
  connectedAt: number
  lastHeartbeatAt: number | null
  lastInboundAt: number
}
