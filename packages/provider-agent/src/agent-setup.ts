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
import { PROVIDER_ID_RE, generateIdentityKey, keyFingerprint } from '@poolcoord/protocol'
import { identityKeyPath, identityKeyValidator, serializeIdentityKey, type IdentityKeyState } from './identity-key-file.js'

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
  /** 'v1' leaves identity v2 out (no key file, a v1 hello): how the agent tests exercise the v1 fallback path. Default 'v2'. */
  protocol?: 'v1' | 'v2'
}

/** The private state directory, checked, and this agent's provider id (given, or generated once and kept). */
async function stateDirAndId(c: AgentConfig, o: SetupOptions): Promise<string> {
  try {
    await ensureStateDir(c.stateDir, o.uid)
  } catch (err) {
    throw new AgentSetupError(`state directory: ${(err as Error).message}`)
  }
  const providerId = c.providerId ?? (await stableProviderId(c, o))
  if (!PROVIDER_ID_RE.test(providerId)) throw new AgentSetupError('the provider id must be 1 to 64 characters of A-Z a-z 0-9 _ . -')
  return providerId
}

export async function setupAgent(c: AgentConfig, o: SetupOptions): Promise<ProviderAgent> {
  const providerId = await stateDirAndId(c, o)
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
  const keyPath = identityKeyPath(c.stateDir, c.coordinatorUrl, providerId)
  const identity = o.protocol === 'v1' ? null : await loadOrCreateKey(c, o, providerId, keyPath)
  o.log.info(
    {
      event: 'agent.starting',
      provider_id: providerId,
      key_fingerprint: identity === null ? null : keyFingerprint(identity.current.publicKey),
      coordinator: c.coordinatorUrl,
      backend: c.backendUrl,
      has_token: token !== null,
      state: tokenPath,
    },
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
    identity,
    keyPath,
    loadIdentity: async () => {
      const r = await readStateFile(keyPath, o.uid, identityKeyValidator(c.coordinatorUrl, providerId))
      if (r.kind === 'ok') return r.value
      o.log.error({ event: 'agent.key_reload_failed', path: keyPath }, `could not read the identity key file again (${r.kind}); keeping the key in memory`)
      return null
    },
  })
}

/**
 * The identity key for this coordinator and id: loaded, or generated and saved before it is
 * ever announced. A corrupt file is moved aside and a new key generated, which the coordinator
 * refuses if the old one was pinned: the message says how the operator lets the new one in.
 */
export async function loadOrCreateKey(
  c: Pick<AgentConfig, 'coordinatorUrl' | 'stateDir'>,
  o: SetupOptions,
  providerId: string,
  keyPath: string,
): Promise<IdentityKeyState> {
  const loaded = await readStateFile(keyPath, o.uid, identityKeyValidator(c.coordinatorUrl, providerId))
  if (loaded.kind === 'ok') return loaded.value
  if (loaded.kind === 'refused') throw new AgentSetupError(loaded.message)
  if (loaded.kind === 'corrupt') {
    o.log.error(
      { event: 'agent.key_file_corrupt', path: keyPath, moved_to: loaded.movedTo },
      `${loaded.message}; it was moved to ${loaded.movedTo ?? '(could not move it)'} and a new identity key is generated. If the coordinator had pinned the old key, it refuses this one: the operator runs coordinator-cli reset-identity --provider-id ${providerId} to let it enroll afresh`,
    )
  }
  const state: IdentityKeyState = { coordinatorUrl: c.coordinatorUrl, providerId, current: generateIdentityKey(), next: null, enrolled: false }
  try {
    await writeStateFile(keyPath, serializeIdentityKey(state, new Date()))
  } catch (err) {
    throw new AgentSetupError(
      `cannot save the identity key to ${keyPath} (${(err as NodeJS.ErrnoException).code ?? 'error'}); make ${c.stateDir} writable by this user`,
    )
  }
  o.log.info({ event: 'agent.key_created', path: keyPath, key_fingerprint: keyFingerprint(state.current.publicKey) }, 'generated an identity key (Ed25519)')
  return state
}

/**
 * poolcoord-provider rotate-key: writes a next key into the key file; the agent announces it
 * (intent rotate) at its next connection, or at once on SIGHUP, and makes it current when the
 * coordinator confirms. Returns what to tell the operator.
 */
export async function rotateKey(c: AgentConfig, o: SetupOptions): Promise<string> {
  const providerId = await stateDirAndId(c, o)
  const keyPath = identityKeyPath(c.stateDir, c.coordinatorUrl, providerId)
  const loaded = await readStateFile(keyPath, o.uid, identityKeyValidator(c.coordinatorUrl, providerId))
  if (loaded.kind !== 'ok') {
    throw new AgentSetupError(
      loaded.kind === 'missing' ? `no identity key for ${providerId} at this coordinator yet (${keyPath}); start the agent once first` : loaded.message,
    )
  }
  const state = loaded.value
  if (state.next !== null) {
    return `a next key (${keyFingerprint(state.next.publicKey)}) is already waiting to be announced; restart the agent or send it SIGHUP`
  }
  const next: IdentityKeyState = { ...state, next: generateIdentityKey() }
  try {
    await writeStateFile(keyPath, serializeIdentityKey(next, new Date()))
  } catch (err) {
    throw new AgentSetupError(`cannot save the next key to ${keyPath} (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
  }
  return `saved the next identity key ${keyFingerprint((next.next as NonNullable<typeof next.next>).publicKey)} (current ${keyFingerprint(state.current.publicKey)}); the running agent announces it on SIGHUP (kill -HUP <pid>) or at its next connection`
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
