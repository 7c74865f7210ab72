/**
 * Every close code the coordinator sends on a provider socket, in one table. The reasons are
 * fixed strings (plus a field name for 4001/4003): they never carry a token or provider input.
 * Providers read the same table to decide what a close means.
 */
export const Close = {
  notHello: { code: 4000, reason: 'unrecognized_first_frame' },
  invalidHello: { code: 4001, reason: 'invalid_hello' },
  helloTimeout: { code: 4002, reason: 'hello_timeout' },
  invalidFrame: { code: 4003, reason: 'invalid_frame' },
  unsupportedVersion: { code: 4004, reason: 'unsupported_version' },
  invalidToken: { code: 4005, reason: 'invalid_token' },
  replaced: { code: 4006, reason: 'replaced' },
  kicked: { code: 4007, reason: 'kicked' },
  /** A credential-less admission (tokenless hello, tokenless enroll) or a key recovery over its rate limit; specs/admission.md §7. */
  mintRateLimited: { code: 4008, reason: 'mint_rate_limited' },
  /** The admission did not reach its ack within the admission deadline (10 s by default). */
  admissionTimeout: { code: 4009, reason: 'admission_timeout' },
  drained: { code: 1000, reason: 'drained' },
  idleTimeout: { code: 4010, reason: 'idle_timeout' },
  /** Cluster mode: the node lost its liveness key (NATS unreachable) and must not route; specs/cluster.md §3. */
  nodeFenced: { code: 4011, reason: 'node_fenced' },
  poolFull: { code: 4429, reason: 'pool_full' },
  admissionBusy: { code: 4429, reason: 'admission_busy' },
  /** Too many sessions from one address prefix (per-prefix session caps). */
  prefixFull: { code: 4429, reason: 'prefix_full' },
  shuttingDown: { code: 1001, reason: 'shutting_down' },
  internal: { code: 1011, reason: 'internal_error' },
} as const

export type CloseSpec = { code: number; reason: string }

/** 4001 and 4003 name the offending field, e.g. `invalid_hello: provider_id`. */
export function withField(spec: CloseSpec, field: string): CloseSpec {
  return { code: spec.code, reason: `${spec.reason}: ${field}` }
}
