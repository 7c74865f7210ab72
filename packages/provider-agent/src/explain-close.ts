/**
 * What the agent logs when its socket closes: for every close that needs a person, the message
 * says what happened and what to do, in the words of the runbook.
 */
import type { Logger } from './logger.js'
import type { SessionClosed } from './agent-session.js'
import type { CloseKind } from './reconnect-policy.js'

const RUNBOOK = 'docs/operations.md §4'

export function explainClose(log: Logger, id: string, c: SessionClosed, kind: CloseKind, delayMs: number | null): void {
  const wait = delayMs === null ? '' : `; retrying in ${Math.round(delayMs / 1000)} s`
  const base = { event: 'agent.disconnected', kind, code: c.code, reason: c.reason, retry_in_ms: delayMs }
  switch (kind) {
    case 'replaced':
      log.error(base, `another instance took over provider id ${id} (close 4006); exiting. Two agents are running with this id and token: stop one of them`)
      return
    case 'protocol_error':
      log.error(
        base,
        `the coordinator rejected this agent's frames (close ${c.code} ${c.reason}); exiting, since a retry would send the same. Check --model, --max-concurrency and --max-context-tokens against specs/protocol.md §2.1`,
      )
      return
    case 'token_refused':
      log.error(
        base,
        `the coordinator refused this provider's saved token (close 4005): it was revoked, or this coordinator does not know it${wait}. To rejoin, an operator issues a new token (coordinator-cli issue-token --provider-id ${id}) and you start the agent once with it in a file named by --token-file (or in POOLCOORD_PROVIDER_TOKEN); see ${RUNBOOK}`,
      )
      return
    case 'credential_required':
      log.error(
        base,
        `the coordinator refused a tokenless connect for ${id} (close 4005): it admits only issued tokens, or this id was already proven with a token this agent no longer has${wait}. Ask the operator for a token (coordinator-cli issue-token --provider-id ${id}) and start the agent once with it in a file named by --token-file (or in POOLCOORD_PROVIDER_TOKEN); see ${RUNBOOK}`,
      )
      return
    case 'mint_limited':
      log.error(
        base,
        `the coordinator limits how often providers without a token may join or recover (close 4008 mint_rate_limited): too many came from this address, or ${id} recovered too often, within the hour${wait}. Nothing needs doing if it is a one-off; an agent that keeps its token and key files never needs a new token, so check that --state-dir survives restarts. The operator can issue a token (coordinator-cli issue-token --provider-id ${id}) or raise the limits (COORD_MINT_RATE_*, COORD_RECOVERY_RATE); see ${RUNBOOK}`,
      )
      return
    default:
      log.warn(
        base,
        `${c.code === null ? `could not connect${c.reason ? ` (${c.reason})` : ''}` : `disconnected (close ${c.code}${c.reason ? ` ${c.reason}` : ''})`}${wait}`,
      )
  }
}
