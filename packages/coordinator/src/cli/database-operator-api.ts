import type { PoolzResponse } from '@poolcoord/protocol'
import { OperatorOps } from '../admin/operator-ops.js'
import type { Config } from '../config.js'
import { CordonStore } from '../cordons/cordon-store.js'
import { Cordons } from '../cordons/cordons.js'
import { openDatabase, type Database } from '../db/database.js'
import { migrate } from '../db/migrate.js'
import type { Logger } from '../logger.js'
import { IdentityStore } from '../tokens/identity-store.js'
import { TokenStore } from '../tokens/token-store.js'
import { CliFailure, type OperatorApi } from './operator-api.js'

/**
 * OperatorOps on the database itself, for when no coordinator answers: the same checks and
 * statements the admin API runs, without a live pool (nothing to kick, no sessions to audit).
 */
export function openDatabaseOperatorApi(config: Config, log: Logger, coordinatorUrl: string): OperatorApi {
  // Opened on first use: what needs a live pool fails without touching the database.
  let opened: Promise<{ db: Database; ops: OperatorOps }> | null = null
  const open = () => (opened ??= openOps(config, log))
  const run = async <T>(fn: (ops: OperatorOps) => Promise<T>): Promise<T> => fn((await open()).ops)
  return {
    listTokens: (activeOnly) => run((ops) => ops.listTokens(activeOnly)),
    issueToken: (providerId, name) => run((ops) => ops.issueToken(providerId, name)),
    revokeToken: (prefix, kick) => run((ops) => ops.revokeToken(prefix, kick)),
    pruneTokens: (olderThanS, apply) => run((ops) => ops.pruneTokens(olderThanS, apply)),
    audit: (maxAgeS) => run((ops) => ops.audit(maxAgeS)),
    listIdentities: () => run((ops) => ops.listIdentities()),
    revokeIdentity: (providerId) => run((ops) => ops.revokeIdentity(providerId)),
    resetIdentity: (providerId) => run((ops) => ops.resetIdentity(providerId)),
    listCordons: () => run((ops) => ops.listCordons()),
    cordon: (providerId, reason) => run((ops) => ops.cordon(providerId, reason)),
    uncordon: (providerId) => run((ops) => ops.uncordon(providerId)),
    pool(): Promise<PoolzResponse> {
      return Promise.reject(new CliFailure(`this needs a running coordinator, and none answered at ${coordinatorUrl}`))
    },
    close: async () => {
      if (opened !== null) await (await opened.catch(() => null))?.db.close()
    },
  }
}

async function openOps(config: Config, log: Logger): Promise<{ db: Database; ops: OperatorOps }> {
  const db = await openDatabase({ url: config.databaseUrl, dataDir: config.dataDir, log })
  try {
    await migrate(db)
  } catch (err) {
    await db.close()
    throw err
  }
  const timeoutMs = config.limits.storeTimeoutMs
  const ops = new OperatorOps(new TokenStore(db, { timeoutMs }), new Cordons(new CordonStore(db, timeoutMs)), new IdentityStore(db, timeoutMs), null)
  return { db, ops }
}
