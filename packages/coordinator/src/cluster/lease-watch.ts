import type { KV } from '@nats-io/kv'
import type { Logger } from '../logger.js'
import { parseLease, providerIdOfKey } from './lease-value.js'
import type { LeaseEntry } from './sessions-bucket.js'

export interface LeaseEvent {
  providerId: string
  entry: LeaseEntry
}

export interface LeaseWatch {
  stop(): void
  /**
   * Settles when the watch ends: null after stop(), else the error that ended it. A node whose
   * watch ended can no longer see handovers addressed to it; it must start a new one (which
   * replays every current lease) before it goes on routing.
   */
  ended: Promise<Error | null>
}

/**
 * Every lease change in pc_sessions, in revision order, starting with the current value of every
 * key: a node that (re)starts its watch therefore also sees handovers written before it. The
 * consumer is ordered: the client recreates it after a gap or a reconnect, from the last
 * revision seen. Keys this version never writes are skipped; values it cannot read arrive as
 * `unreadable`.
 */
export async function watchLeases(kv: KV, onEvent: (e: LeaseEvent) => void, log: Logger): Promise<LeaseWatch> {
  const iter = await kv.watch({ key: 's.>' })
  let stopped = false
  const ended = (async (): Promise<Error | null> => {
    try {
      for await (const e of iter) {
        const providerId = providerIdOfKey(e.key)
        if (providerId === null) {
          log.warn({ event: 'cluster.lease_key_foreign', key: e.key.slice(0, 200) }, 'a key in pc_sessions that no coordinator writes; ignored')
          continue
        }
        const lease = e.operation === 'PUT' ? parseLease(e.value) : null
        const entry: LeaseEntry =
          e.operation !== 'PUT'
            ? { kind: 'none', revision: e.revision }
            : lease === null
              ? { kind: 'unreadable', revision: e.revision }
              : { kind: 'lease', lease, revision: e.revision }
        try {
          onEvent({ providerId, entry })
        } catch (err) {
          log.error({ event: 'cluster.lease_event_failed', err }, 'a lease event handler threw')
        }
      }
      return stopped ? null : new Error('the session lease watch ended')
    } catch (err) {
      return err instanceof Error ? err : new Error(String(err))
    }
  })()
  return {
    stop() {
      stopped = true
      iter.stop()
    },
    ended,
  }
}
