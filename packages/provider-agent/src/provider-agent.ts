/**
 * The provider agent: keeps one admitted socket to the coordinator, in front of a local
 * OpenAI-compatible backend, across restarts of either side.
 *
 * The credential rules (specs/protocol.md §2.2, specs/admission.md):
 * - A token from `assigned_provider_token` is written to disk *before* the agent relies on it.
 *   Relying on it means presenting it: the first bearer connect proves the identity, and from
 *   then on a tokenless connect for this id is refused for good. If the write fails, the agent
 *   never presents that token, so the identity stays unproven and the next tokenless connect is
 *   self-healed with a fresh token instead of being locked out.
 * - Once saved, the token is proven at once, without a gap: a second socket connects with it, and
 *   the coordinator's replacement of the first (4006) is expected, not a rival.
 * - What a close means, and how long to wait, is the pure reconnect-policy.ts.
 *
 * Identity v2 (specs/provider-agent.md §3), when the agent has a key:
 * - It offers `poolcoord.v2` and proves its key; a coordinator that does not speak v2 gets v1
 *   from then on. The intent follows from what the agent holds: a token, `connect` (`rotate`
 *   when a next key waits in the key file); none, `recover` once enrolled, else `enroll`. The
 *   challenge's key_state corrects a wrong guess once, at once.
 * - A 4005 for its token is retried once, at once, as a tokenless `recover` (seed 002's bounded
 *   retry-once); a failed recovery then waits the long backoff like a refused token.
 * - A token in a key_proven ack (enrolment, recovery, renewal) is saved before it is used, and
 *   needs no proving socket: a key-pinned id is never self-healed, so nothing is at stake.
 */
import { EventEmitter } from 'node:events'
import type { Logger } from './logger.js'
import { AgentSession, type HelloAck, type HelloFields } from './agent-session.js'
import { BackendClient } from './backend-client.js'
import { explainClose } from './explain-close.js'
import { decideReconnect, effectiveAttempt, type BackoffSettings } from './reconnect-policy.js'
import { serializeTokenState, writeStateFile } from './state-file.js'
import { serializeIdentityKey, type IdentityKeyState } from './identity-key-file.js'
import type { SessionClosed, SessionIdentity } from './agent-session.js'
import type { IdentityIntent } from '@poolcoord/protocol'

export interface AgentOptions {
  coordinatorUrl: string
  backendUrl: string
  providerId: string
  /** Where this identity's token lives (state-file.ts tokenStatePath). */
  tokenPath: string
  /** The token loaded from tokenPath or imported, or null. */
  token: string | null
  hostname: string
  binaryVersion: string
  maxConcurrency: number
  maxContextTokens: number
  /** Models to announce; null asks the backend's /v1/models. */
  models: string[] | null
  throughputTps: number | null
  backoff: BackoffSettings
  drainTimeoutMs: number
  log: Logger
  random?: () => number
  now?: () => number
  /** Identity v2: the key, or null to speak v1 only. */
  identity?: IdentityKeyState | null
  /** Where the key lives (identity-key-file.ts); written on enrolment and rotation. */
  keyPath?: string
  /** Reads the key file again (rotate-key writes a next key there); SIGHUP calls reloadIdentity(). */
  loadIdentity?: () => Promise<IdentityKeyState | null>
}

export type AgentExit = { reason: 'stopped' } | { reason: 'replaced' | 'protocol_error'; code: number | null }

export class ProviderAgent extends EventEmitter {
  private token: string | null
  private current: AgentSession | null = null
  private proving: AgentSession | null = null
  private attempt = 0
  private stopping = false
  private wake: (() => void) | null = null
  private hello: HelloFields | null = null
  /** Token writes, one at a time; the loop waits for them before it reconnects. */
  private saving: Promise<void> = Promise.resolve()
  private mints = 0
  /** The coordinator accepted our token since it last refused it (reconnect-policy.ts). */
  private tokenAccepted = false
  private identity: IdentityKeyState | null
  /** The coordinator did not select poolcoord.v2 last time: the next connection (one) speaks v1. */
  private v1Once = false
  /** One-shot intent for the next connection: a key_state switch or the retry-once recovery. */
  private nextIntent: IdentityIntent | null = null
  private recoverTried = false
  private switches = 0
  private readonly slots: { active: number; max: number }
  /** One keep-alive pool to the backend for every socket of this agent; closed when run() returns. */
  private readonly backend: BackendClient
  private readonly now: () => number
  private readonly random: () => number

  constructor(private readonly o: AgentOptions) {
    super()
    this.token = o.token
    this.identity = o.identity ?? null
    this.slots = { active: 0, max: o.maxConcurrency }
    this.backend = new BackendClient(o.backendUrl, { maxSockets: o.maxConcurrency })
    this.now = o.now ?? Date.now
    this.random = o.random ?? Math.random
  }

  /** The session serving now, if any. */
  get session(): AgentSession | null {
    return this.current
  }

  async run(): Promise<AgentExit> {
    try {
      return await this.serve()
    } finally {
      // Idle kept-alive sockets would otherwise hold the process open after a stop.
      this.backend.destroy()
    }
  }

  private async serve(): Promise<AgentExit> {
    const models = this.o.models ?? (await this.discoverModels())
    if (models === null) return { reason: 'stopped' }
    this.hello = {
      provider_id: this.o.providerId,
      hostname: this.o.hostname,
      model_id: models[0]!,
      supported_models: models.slice(1),
      binary_version: this.o.binaryVersion,
      max_concurrency: this.o.maxConcurrency,
      max_context_tokens: this.o.maxContextTokens,
      ...(this.o.throughputTps !== null ? { throughput_tps_estimate: this.o.throughputTps } : {}),
    }
    let s = this.open()
    for (;;) {
      const closed = await s.closed
      if (this.stopping) {
        this.proving?.close(1000, 'provider_stopping')
        return { reason: 'stopped' }
      }
      if (this.current !== s) {
        s = this.current! // replaced by our own proving socket
        continue
      }
      if (this.proving !== null) {
        s = this.current = this.proving // the proving socket carries on alone
        continue
      }
      if (this.retryAtOnce(closed)) {
        s = this.open()
        continue
      }
      const admittedFor = closed.admittedAt === null ? null : this.now() - closed.admittedAt
      const attempt = effectiveAttempt(this.attempt, admittedFor, this.o.backoff)
      // A failed recovery is a refused credential: it waits like a refused token, not like a tokenless connect.
      const withToken = closed.withToken || closed.intent === 'recover'
      const d = decideReconnect({ ...closed, withToken, tokenAcceptedSinceRefusal: this.tokenAccepted }, attempt, this.o.backoff, this.random())
      if (d.kind === 'token_refused') this.tokenAccepted = false
      this.attempt = attempt + 1
      explainClose(this.o.log, this.o.providerId, closed, d.kind, d.action === 'retry' ? d.delayMs : null)
      if (d.action === 'exit') return { reason: d.kind as 'replaced' | 'protocol_error', code: closed.code }
      this.emit('backoff', { kind: d.kind, code: closed.code, delayMs: d.delayMs })
      // A new round after the backoff: the key_state correction and the retry-once recovery may
      // happen again (a database blip must not cost the agent its recovery until a restart).
      this.switches = 0
      this.recoverTried = false
      await this.sleep(d.delayMs)
      // A token minted on the last connection is presented, and so proven, by the next one,
      // never lost to a self-heal because its write had not finished.
      await this.saving
      if (this.stopping) return { reason: 'stopped' }
      s = this.open()
    }
  }

  /** Stop taking work, let requests in flight finish (up to drainTimeoutMs), then close. */
  async stop(): Promise<void> {
    if (this.stopping) return
    this.stopping = true
    this.wake?.()
    for (const s of [this.current, this.proving]) {
      if (s === null) continue
      s.draining = true
      s.heartbeatSoon()
    }
    const deadline = this.now() + this.o.drainTimeoutMs
    while (this.slots.active > 0 && this.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    // Both read again: a proving socket may have taken over while requests finished.
    this.proving?.close(1000, 'provider_stopping')
    this.current?.close(1000, 'provider_stopping')
  }

  private open(): AgentSession {
    const s = this.connect()
    this.current = s
    return s
  }

  /** Identity v2 closes that call for another connection now rather than after a backoff. */
  private retryAtOnce(c: SessionClosed): boolean {
    if (c.intent === null) return false
    const id = this.o.providerId
    if (c.v2Refused) {
      // Once, not for good: one hop through an old node or a proxy that drops the subprotocol
      // must not leave a key-pinned agent presenting a bare bearer, which its id refuses.
      if (this.identity?.enrolled === true) {
        this.o.log.warn(
          { event: 'agent.v2_unsupported' },
          'the coordinator did not select identity v2 (poolcoord.v2), but this id proves a key there: not falling back to v1; retrying. A proxy in between may drop Sec-WebSocket-Protocol',
        )
        return false
      }
      this.v1Once = true
      this.o.log.warn(
        { event: 'agent.v2_unsupported' },
        'the coordinator does not speak identity v2 (poolcoord.v2); connecting with protocol v1 and the token alone',
      )
      return true
    }
    if (c.originMismatch !== null) {
      this.o.log.error(
        { event: 'agent.origin_mismatch', dialled: new URL(this.o.coordinatorUrl).origin, named: c.originMismatch },
        `the coordinator names its origin ${c.originMismatch}, but this agent dialled ${new URL(this.o.coordinatorUrl).origin}; nothing was signed. If this is the right coordinator, its operator must set COORD_PUBLIC_ORIGIN=${new URL(this.o.coordinatorUrl).origin}`,
      )
      return false
    }
    if (c.switchIntent !== null && this.switches < 2) {
      this.switches++
      this.nextIntent = c.switchIntent
      return true
    }
    if (c.code === 4005 && c.withToken && !this.recoverTried) {
      this.recoverTried = true
      this.nextIntent = 'recover'
      // A refused token is of no further use to a key holder: from now on it connects without it
      // (the file keeps it until a recovered token replaces it).
      this.token = null
      this.o.log.warn(
        { event: 'agent.recovering', provider_id: id },
        'the coordinator refused the saved token (close 4005); recovering with the identity key, once',
      )
      return true
    }
    return false
  }

  /** What the next connection proves, from what the agent holds (module comment). */
  private nextIdentity(): { identity: SessionIdentity | null; tokenless: boolean } {
    const state = this.identity
    const forced = this.nextIntent
    const v1 = this.v1Once
    this.nextIntent = null
    this.v1Once = false
    if (v1 || state === null) return { identity: null, tokenless: false }
    const tokenless = forced === 'recover' || this.token === null
    const intent: IdentityIntent = forced ?? (tokenless ? (state.enrolled ? 'recover' : 'enroll') : state.next !== null ? 'rotate' : 'connect')
    // Two corrections per round at most; after that the session proves the intent it announced.
    const maySwitch = this.switches < 2
    return { identity: { key: state.current, next: intent === 'rotate' ? state.next : null, intent, maySwitch }, tokenless }
  }

  /**
   * SIGHUP: read the key file again; when rotate-key left a next key there, announce it now on a
   * second socket, once the current one has no request in flight (it reports busy meanwhile).
   */
  async reloadIdentity(): Promise<void> {
    if (this.o.loadIdentity === undefined || this.identity === null) return
    const loaded = await this.o.loadIdentity()
    if (loaded === null) return
    this.identity = { ...loaded, enrolled: loaded.enrolled || this.identity.enrolled }
    const first = this.current
    if (loaded.next === null || first === null || first.ack === null || this.proving !== null || this.stopping) return
    first.holding = true
    first.heartbeatSoon()
    const deadline = this.now() + this.o.drainTimeoutMs
    while (first.inFlight > 0 && this.now() < deadline && this.current === first) await new Promise((r) => setTimeout(r, 50))
    if (this.current === first && !this.stopping) this.prove(first)
  }

  /** `v1`: speak v1 on this socket (a proving socket beside a session the coordinator admitted by v1). */
  private connect(v1 = false): AgentSession {
    if (v1) this.v1Once = true
    const { identity, tokenless } = this.nextIdentity()
    return new AgentSession({
      identity,
      url: this.o.coordinatorUrl,
      token: tokenless ? null : this.token,
      hello: this.hello!,
      backend: this.backend,
      log: this.o.log,
      slots: this.slots,
      now: this.now,
      onAck: (ack, session) => void this.admitted(ack, session),
    })
  }

  private async admitted(ack: HelloAck, session: AgentSession): Promise<void> {
    const id = this.o.providerId
    this.o.log.info({ event: 'agent.admitted', provider_id: id, auth_state: ack.auth_state, assigned_id: ack.assigned_id }, `admitted as ${ack.auth_state}`)
    if (session === this.proving) {
      this.proving = null
      const first = this.current
      this.current = session
      // The coordinator replaces the first socket (4006) as it admits this one; close it here too,
      // so that a coordinator which does not (an older or another implementation) leaves no
      // orphaned socket behind.
      if (first !== null && first !== session) first.close(1000, 'replaced_by_own_connection')
    }
    if (this.stopping) {
      session.draining = true
      session.heartbeatSoon()
    }
    if (session.withToken && (ack.auth_state === 'bearer_validated' || ack.auth_state === 'key_proven')) this.tokenAccepted = true
    this.emit('admitted', { authState: ack.auth_state, assignedId: ack.assigned_id, withToken: session.withToken })
    if (ack.auth_state === 'key_proven') return this.keyAdmitted(ack, session)
    if (ack.auth_state === 'bearerless_duplicate') {
      this.o.log.warn(
        { event: 'agent.quarantined', provider_id: id },
        `another connection claimed provider id ${id} at the same moment; this one is quarantined and would get no traffic, so it reconnects. If two agents share this id, stop one`,
      )
      session.close(1000, 'quarantined')
      return
    }
    const token = ack.assigned_provider_token
    if (token === undefined) return
    const mint = ++this.mints
    const save = this.saving.then(() => this.save(token, mint))
    this.saving = save.then(
      () => {},
      () => {},
    )
    if (!(await save)) {
      session.holding = false
      session.heartbeatSoon()
      return
    }
    this.token = token
    this.o.log.info({ event: 'agent.token_saved', path: this.o.tokenPath }, 'provider token saved (mode 0600); proving it now')
    this.emit('token_saved', { path: this.o.tokenPath })
    if (!this.stopping && session === this.current) {
      this.prove(session)
    } else {
      session.holding = false
      session.heartbeatSoon()
    }
  }

  /**
   * A key-proven admission: the key file learns it is enrolled (and, after a rotation, which key
   * is current), and a token in the ack is saved before the agent presents it.
   */
  private async keyAdmitted(ack: HelloAck, session: AgentSession): Promise<void> {
    this.recoverTried = false
    this.switches = 0
    const state = this.identity
    const rotated = session.identity?.intent === 'rotate' && state?.next != null
    if (state !== null && (!state.enrolled || rotated)) {
      const next: IdentityKeyState = rotated
        ? { ...state, current: state.next as NonNullable<typeof state.next>, next: null, enrolled: true }
        : { ...state, enrolled: true }
      this.identity = next
      await this.enqueue(() => this.saveIdentity(next))
      if (rotated)
        this.o.log.info(
          { event: 'agent.key_rotated', generation: ack.identity_generation },
          'the coordinator confirmed the key rotation; the next key is now current',
        )
    }
    const token = ack.assigned_provider_token
    if (token === undefined) return
    const mint = ++this.mints
    if (!(await this.enqueue(() => this.save(token, mint)))) return
    this.token = token
    this.o.log.info({ event: 'agent.token_saved', path: this.o.tokenPath }, 'provider token saved (mode 0600)')
    this.emit('token_saved', { path: this.o.tokenPath })
  }

  /** Runs a state-file write after the ones before it; the reconnect loop waits for them all. */
  private enqueue<T>(write: () => Promise<T>): Promise<T> {
    const done = this.saving.then(write)
    this.saving = done.then(
      () => {},
      () => {},
    )
    return done
  }

  private async saveIdentity(state: IdentityKeyState): Promise<boolean> {
    if (this.o.keyPath === undefined) return false
    try {
      await writeStateFile(this.o.keyPath, serializeIdentityKey(state, new Date(this.now())))
      return true
    } catch (err) {
      this.o.log.error(
        { event: 'agent.key_not_saved', path: this.o.keyPath, err },
        `could not update the identity key file ${this.o.keyPath}; this agent keeps going with the key in memory. Make the state directory writable by this user`,
      )
      return false
    }
  }

  /** Writes a minted token; false if it was not written or a newer mint came first. */
  private async save(token: string, mint: number): Promise<boolean> {
    if (mint !== this.mints) return false
    try {
      await writeStateFile(
        this.o.tokenPath,
        serializeTokenState({ coordinatorUrl: this.o.coordinatorUrl, providerId: this.o.providerId, token }, new Date(this.now())),
      )
      return mint === this.mints
    } catch (err) {
      this.o.log.error(
        { event: 'agent.token_not_saved', path: this.o.tokenPath, err },
        `could not save the provider token to ${this.o.tokenPath}; this agent will not use it, so the identity stays unproven and a restart gets a fresh token. Make the state directory writable by this user, then restart the agent`,
      )
      return false
    }
  }

  /** Connect again with the saved token while the first socket still holds the identity. */
  private prove(first: AgentSession): void {
    const s = this.connect(first.identity === null)
    this.proving = s
    void s.closed.then((c) => {
      if (this.proving !== s) return
      this.proving = null
      if (this.current !== first) return
      first.holding = false
      first.heartbeatSoon()
      this.o.log.warn(
        { event: 'agent.prove_failed', code: c.code, reason: c.reason },
        'could not present the saved token yet; staying on the current connection and presenting it at the next reconnect',
      )
    })
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms)
      function done(): void {
        clearTimeout(t)
        resolve()
      }
      this.wake = done
    })
  }

  /** Asks the backend what it serves, retrying with backoff until it answers or stop() is called. */
  private async discoverModels(): Promise<string[] | null> {
    for (let attempt = 0; !this.stopping; attempt++) {
      try {
        const res = await fetch(`${this.o.backendUrl}/models`, { signal: AbortSignal.timeout(5000) })
        if (res.ok) {
          const body = (await res.json()) as { data?: Array<{ id?: unknown }> }
          const ids = [...new Set((body.data ?? []).map((m) => m.id).filter((v): v is string => typeof v === 'string' && v.length > 0 && v.length <= 256))]
          if (ids.length > 0) return ids.slice(0, 64)
          this.o.log.warn({ event: 'agent.no_models' }, `the backend at ${this.o.backendUrl} lists no models; load one, or name it with --model`)
        } else {
          this.o.log.warn({ event: 'agent.models_failed', status: res.status }, `GET ${this.o.backendUrl}/models answered ${res.status}`)
        }
      } catch {
        this.o.log.warn({ event: 'agent.backend_unreachable' }, `the backend at ${this.o.backendUrl} is not reachable; is it running?`)
      }
      await this.sleep(Math.max(1000, Math.min(30_000, 1000 * 2 ** attempt)))
    }
    return null
  }
}
