/**
 * Turns the agent's settings into a ready ProviderAgent: the private state directory, the
 * provider id (given, or generated once and kept), and the token for this coordinator and id
 * (imported, loaded, or none). Every refusal is an AgentSetupError whose message tells the
 * operator what to do; a corrupt file is moved aside and the agent starts without it.
 */
import type { Logger } from './logger.js'
import type { AgentConfig } from './agent-config.js'
import { ProviderAgent } from './provider-agent.js'
import { defaultBackoff, type BackoffSettings } from './reconnect-policy.js'
import {
  ensureStateDir,
  generateProviderId,
  identityPath,
  identityValidator,
  readStateFile,
  serializeIdentity,
  serializeTokenState,
  tokenStatePath,
  tokenStateValidator,
  writeStateFile,
} from './state-file.js'
import { PROVIDER_ID_RE } from '@poolcoord/protocol'

export class AgentSetupError extends Error {
  readonly code = 'AGENT_SETUP'
}

export interface SetupOptions {
  log: Logger
  uid: number
  binaryVersion: string
  backoff?: BackoffSettings
  drainTimeoutMs?: number
  random?: () => number
}

export async function setupAgent(c: AgentConfig, o: SetupOptions): Promise<ProviderAgent> {
  try {
    await ensureStateDir(c.stateDir, o.uid)
  } catch (err) {
    throw new AgentSetupError(`state directory: ${(err as Error).message}`)
  }
  const providerId = c.providerId ?? (await stableProviderId(c, o))
  if (!PROVIDER_ID_RE.test(providerId)) throw new AgentSetupError('the provider id must be 1 to 64 characters of A-Z a-z 0-9 _ . -')
  const tokenPath = tokenStatePath(c.stateDir, c.coordinatorUrl, providerId)

  let token: string | null = null
  if (c.importToken !== null) {
    try {
      await writeStateFile(tokenPath, serializeTokenState({ coordinatorUrl: c.coordinatorUrl, providerId, token: c.importToken }, new Date()))
    } catch (err) {
      throw new AgentSetupError(
        `cannot save the imported token to ${tokenPath} (${(err as NodeJS.ErrnoException).code ?? 'error'}); make ${c.stateDir} writable by this user`,
      )
    }
    o.log.info({ event: 'agent.token_imported', path: tokenPath }, 'installed the issued token; it replaces any earlier one for this coordinator and id')
    token = c.importToken
  } else {
    const loaded = await readStateFile(tokenPath, o.uid, tokenStateValidator(c.coordinatorUrl, providerId))
    if (loaded.kind === 'refused') throw new AgentSetupError(loaded.message)
    if (loaded.kind === 'corrupt') {
      o.log.error(
        { event: 'agent.token_file_corrupt', path: tokenPath, moved_to: loaded.movedTo },
        `${loaded.message}; it was moved to ${loaded.movedTo ?? '(could not move it)'} and the agent connects without a token. If the coordinator then refuses it (close 4005), this id was already proven: ask the operator for a new token (docs/operations.md §4) and start the agent once with it in --token-file or POOLCOORD_PROVIDER_TOKEN`,
      )
    }
    if (loaded.kind === 'ok') token = loaded.value.token
  }
  o.log.info(
    { event: 'agent.starting', provider_id: providerId, coordinator: c.coordinatorUrl, backend: c.backendUrl, has_token: token !== null, state: tokenPath },
    token === null ? 'starting without a token: the coordinator will mint one on first connect' : 'starting with the saved token',
  )
  return new ProviderAgent({
    coordinatorUrl: c.coordinatorUrl,
    backendUrl: c.backendUrl,
    providerId,
    tokenPath,
    token,
    hostname: c.hostname.slice(0, 253) || 'provider',
    binaryVersion: o.binaryVersion,
    maxConcurrency: c.maxConcurrency,
    maxContextTokens: c.maxContextTokens,
    models: c.models,
    throughputTps: c.throughputTps,
    backoff: o.backoff ?? defaultBackoff,
    drainTimeoutMs: o.drainTimeoutMs ?? 30_000,
    log: o.log,
    random: o.random,
  })
}

async function stableProviderId(c: AgentConfig, o: SetupOptions): Promise<string> {
  const path = identityPath(c.stateDir)
  const loaded = await readStateFile(path, o.uid, identityValidator)
  if (loaded.kind === 'ok') return loaded.value.providerId
  if (loaded.kind === 'refused') throw new AgentSetupError(loaded.message)
  if (loaded.kind === 'corrupt') {
    o.log.error(
      { event: 'agent.identity_file_corrupt', path, moved_to: loaded.movedTo },
      `${loaded.message}; moved to ${loaded.movedTo ?? '(could not move it)'}. A new provider id is generated; to keep the old one, pass it with --provider-id`,
    )
  }
  const id = generateProviderId(c.hostname)
  try {
    await writeStateFile(path, serializeIdentity(id, new Date()))
  } catch (err) {
    throw new AgentSetupError(
      `cannot save the generated provider id to ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'}); make ${c.stateDir} writable by this user, or pass --provider-id`,
    )
  }
  o.log.info({ event: 'agent.identity_created', provider_id: id, path }, `generated provider id ${id}`)
  return id
}
