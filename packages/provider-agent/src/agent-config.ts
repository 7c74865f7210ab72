/**
 * poolcoord-provider's settings, from flags or the environment (a flag wins). The agent's only
 * reader of process.env, as config.ts is the coordinator's. The token is accepted from the
 * environment or a file only: a flag would show it in every process list.
 */
import { Command, CommanderError, InvalidArgumentError } from 'commander'
import { readFileSync } from 'node:fs'
import { hostname as osHostname, homedir } from 'node:os'
import { join } from 'node:path'
import { LOG_LEVELS } from './logger.js'
import { TOKEN_RE } from '@poolcoord/protocol'

export interface AgentConfig {
  coordinatorUrl: string
  backendUrl: string
  providerId: string | null
  stateDir: string
  hostname: string
  maxConcurrency: number
  maxContextTokens: number
  models: string[] | null
  throughputTps: number | null
  /** An issued token to install before connecting, from POOLCOORD_PROVIDER_TOKEN or --token-file. */
  importToken: string | null
  logLevel: string
}

export class AgentUsageError extends Error {
  readonly code = 'AGENT_USAGE'
}

/** Host names of this machine: plain ws:// is accepted for them, no one else is on the path. */
export const LOOPBACK_HOSTS: readonly string[] = ['localhost', '127.0.0.1', '[::1]']

function int(name: string, min: number, max: number): (v: string) => number {
  return (v) => {
    const n = Number(v)
    if (!/^\d+$/.test(v) || n < min || n > max) throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}`)
    return n
  }
}

function url(v: string, protocols: string[], wrongProtocol: string): URL {
  let u: URL
  try {
    u = new URL(v)
  } catch {
    throw new InvalidArgumentError('not a URL')
  }
  if (!protocols.includes(u.protocol)) throw new InvalidArgumentError(wrongProtocol)
  return u
}

function wsUrl(v: string): string {
  const u = url(v, ['ws:', 'wss:'], 'must start with wss:// (or ws:// on a trusted network)')
  if (u.search !== '') throw new InvalidArgumentError('must not carry a query string; tokens go in the Authorization header')
  if (u.hash !== '' || u.username !== '' || u.password !== '') throw new InvalidArgumentError('must not carry a #fragment or user:password@')
  return u.toString()
}

function httpUrl(v: string): string {
  return url(v, ['http:', 'https:'], 'must be an http:// or https:// URL').toString().replace(/\/+$/, '')
}

export function defaultStateDir(env: NodeJS.ProcessEnv): string {
  const base = env.XDG_STATE_HOME || join(env.HOME || homedir(), '.local', 'state')
  return join(base, 'poolcoord-provider')
}

/** Parses argv (without node and the script) and env; throws AgentUsageError with the reason. */
export function readAgentConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): AgentConfig {
  const program = new Command('poolcoord-provider')
    .description('Connects a local OpenAI-compatible inference server to a poolcoord coordinator.')
    .option('--coordinator <url>', 'coordinator WebSocket URL, e.g. wss://pool.example.com/ws/provider [POOLCOORD_COORDINATOR_URL]', wsUrl)
    .option('--backend <url>', 'OpenAI-compatible base URL [POOLCOORD_BACKEND_URL]', httpUrl)
    .option('--provider-id <id>', "this provider's id; default: generated once and kept in the state dir [POOLCOORD_PROVIDER_ID]")
    .option('--model <id...>', "model(s) to announce; default: the backend's /v1/models [POOLCOORD_MODELS, comma-separated]")
    .option('--max-concurrency <n>', 'requests served at once [POOLCOORD_MAX_CONCURRENCY]', int('--max-concurrency', 1, 256))
    .option('--max-context-tokens <n>', 'context window to announce [POOLCOORD_MAX_CONTEXT_TOKENS]', int('--max-context-tokens', 1, 100_000_000))
    .option('--throughput <tps>', 'tokens per second estimate, for routing [POOLCOORD_THROUGHPUT_TPS]', int('--throughput', 0, 1_000_000))
    .option('--hostname <name>', 'host name to announce [POOLCOORD_HOSTNAME]')
    .option('--state-dir <dir>', 'where the token and generated id are kept [POOLCOORD_STATE_DIR]')
    .option('--token-file <path>', 'install an operator-issued token read from this file (or set POOLCOORD_PROVIDER_TOKEN)')
    .option('--log-level <level>', 'log level [POOLCOORD_LOG_LEVEL]')
    .option('--insecure', 'allow ws:// to a host other than this one: the token would cross the network in clear text [POOLCOORD_ALLOW_INSECURE=1]')
    .exitOverride()
    .configureOutput({ writeErr: () => {}, writeOut: () => {} })
    .helpOption('-h, --help')
  try {
    program.parse(argv, { from: 'user' })
  } catch (err) {
    if (err instanceof CommanderError && (err.code === 'commander.helpDisplayed' || err.code === 'commander.help')) {
      throw new AgentUsageError(program.helpInformation())
    }
    throw new AgentUsageError(err instanceof Error ? err.message.replace(/^error: /, '') : String(err))
  }
  const f = program.opts<Record<string, unknown>>()
  const pick = <T>(flag: unknown, envName: string, parse: (v: string) => T): T | undefined => {
    if (flag !== undefined) return flag as T
    const v = env[envName]
    if (v === undefined || v === '') return undefined
    try {
      return parse(v)
    } catch (err) {
      throw new AgentUsageError(`${envName}: ${(err as Error).message}`)
    }
  }
  const coordinatorUrl = pick(f.coordinator, 'POOLCOORD_COORDINATOR_URL', wsUrl)
  if (coordinatorUrl === undefined)
    throw new AgentUsageError('the coordinator URL is required: --coordinator wss://<host>/ws/provider or POOLCOORD_COORDINATOR_URL')
  const insecure = f.insecure === true || env.POOLCOORD_ALLOW_INSECURE === '1'
  const target = new URL(coordinatorUrl)
  if (target.protocol === 'ws:' && !insecure && !LOOPBACK_HOSTS.includes(target.hostname)) {
    throw new AgentUsageError(`ws:// to ${target.hostname} would send the provider token in clear text; use wss://, or pass --insecure on a network you trust`)
  }
  const models =
    (f.model as string[] | undefined) ??
    env.POOLCOORD_MODELS?.split(',')
      .map((m) => m.trim())
      .filter(Boolean)
  const logLevel = pick(f.logLevel, 'POOLCOORD_LOG_LEVEL', (v) => v) ?? 'info'
  if (!LOG_LEVELS.includes(logLevel)) throw new AgentUsageError(`log level must be one of ${LOG_LEVELS.join(', ')}`)
  return {
    coordinatorUrl,
    backendUrl: pick(f.backend, 'POOLCOORD_BACKEND_URL', httpUrl) ?? 'http://127.0.0.1:11434/v1',
    providerId: pick(f.providerId, 'POOLCOORD_PROVIDER_ID', (v) => v) ?? null,
    stateDir: pick(f.stateDir, 'POOLCOORD_STATE_DIR', (v) => v) ?? defaultStateDir(env),
    hostname: pick(f.hostname, 'POOLCOORD_HOSTNAME', (v) => v) ?? osHostname(),
    maxConcurrency: pick(f.maxConcurrency, 'POOLCOORD_MAX_CONCURRENCY', int('POOLCOORD_MAX_CONCURRENCY', 1, 256)) ?? 1,
    maxContextTokens: pick(f.maxContextTokens, 'POOLCOORD_MAX_CONTEXT_TOKENS', int('POOLCOORD_MAX_CONTEXT_TOKENS', 1, 100_000_000)) ?? 8192,
    models: models && models.length > 0 ? models : null,
    throughputTps: pick(f.throughput, 'POOLCOORD_THROUGHPUT_TPS', int('POOLCOORD_THROUGHPUT_TPS', 0, 1_000_000)) ?? null,
    importToken: importedToken(f.tokenFile as string | undefined, takeEnv(env, 'POOLCOORD_PROVIDER_TOKEN')),
    logLevel,
  }
}

/** Reads a secret and removes it from the environment, so no child process or dump inherits it. */
function takeEnv(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const v = env[name]
  delete env[name]
  return v
}

function importedToken(file: string | undefined, fromEnv: string | undefined): string | null {
  let raw: string | undefined = fromEnv
  if (file !== undefined) {
    try {
      raw = readFileSync(file, 'utf8')
    } catch (err) {
      throw new AgentUsageError(`cannot read --token-file ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`)
    }
  }
  if (raw === undefined || raw.trim() === '') return null
  const token = raw.trim()
  if (!TOKEN_RE.test(token)) throw new AgentUsageError('the provider token must be 64 lowercase hex characters, as coordinator-cli issue-token prints it')
  return token
}
