import type { PoolzResponse } from '@poolcoord/protocol'
import type { OperatorOps } from '../admin/operator-ops.js'

/**
 * What coordinator-cli asks for. Two transports implement it: the coordinator's admin API
 * (http-operator-api.ts), and the same OperatorOps run on the database directly
 * (database-operator-api.ts) when no coordinator answers.
 */
export type OperatorApi = Pick<
  OperatorOps,
  | 'listTokens'
  | 'issueToken'
  | 'revokeToken'
  | 'pruneTokens'
  | 'audit'
  | 'listIdentities'
  | 'revokeIdentity'
  | 'resetIdentity'
  | 'listCordons'
  | 'cordon'
  | 'uncordon'
> & {
  /** The live pool; only a running coordinator has one. */
  pool(): Promise<PoolzResponse>
  close(): Promise<void>
}

/** A failure the CLI reports as it is, with its exit code (1: the condition failed, 2: usage). */
export class CliFailure extends Error {
  constructor(
    message: string,
    readonly exitCode: 1 | 2 = 1,
    readonly code = 'COORD_CLI_FAILED',
  ) {
    super(message)
  }
}
