import type { Config } from './config.js'
import { pgCode } from './db/pg-errors.js'
import { ConfigError, CoordinatorError } from './errors.js'

export interface StartupFailure {
  /** What went wrong and what to do about it, naming the setting. */
  message: string
  /** 2: a setting is wrong (as the runbook says); 1: anything else. */
  exitCode: 1 | 2
}

/**
 * Turns a failed start into one sentence an operator can act on. System errors are told apart
 * by their `code` (errno names), database errors by SQLSTATE, never by message text.
 */
/** Where the start was: binding the port, or opening the database (the same errno means different things). */
export type StartupPhase = 'settings' | 'listen' | 'database'

export function explainStartupFailure(
  err: unknown,
  config: Pick<Config, 'host' | 'port' | 'databaseUrl' | 'dataDir'> | null,
  phase: StartupPhase = 'database',
): StartupFailure {
  if (err instanceof ConfigError) return { message: err.message, exitCode: 2 }
  const code = (err as { code?: unknown } | null)?.code
  const where = config === null ? '' : `${config.host}:${config.port}`
  switch (code) {
    case 'EADDRINUSE':
      return { message: `port ${config?.port} is in use on ${config?.host}: stop what holds it, or set COORD_PORT to a free port`, exitCode: 1 }
    case 'EADDRNOTAVAIL':
      return { message: `COORD_HOST=${config?.host} is not an address of this machine: use 127.0.0.1, 0.0.0.0, or one of its addresses`, exitCode: 2 }
    case 'EACCES':
      if (phase === 'listen')
        return { message: `not allowed to listen on ${where}: use a COORD_PORT above 1023, or run with the privilege to bind it`, exitCode: 2 }
      return {
        message: `permission denied on ${fileOf(err)} (COORD_DATA_DIR=${config?.dataDir}): the data directory must belong to the user the coordinator runs as`,
        exitCode: 2,
      }
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return phase === 'database' && config?.databaseUrl
        ? { message: `the host in DATABASE_URL (${redactUrl(config.databaseUrl)}) cannot be resolved`, exitCode: 2 }
        : { message: `COORD_HOST=${config?.host} cannot be resolved`, exitCode: 2 }
    case 'ECONNREFUSED':
      return { message: `PostgreSQL at ${redactUrl(config?.databaseUrl ?? '')} refused the connection: is it running? (DATABASE_URL)`, exitCode: 1 }
  }
  switch (pgCode(err)) {
    case '28P01':
    case '28000':
      return { message: `PostgreSQL refused the login in DATABASE_URL (${redactUrl(config?.databaseUrl ?? '')}): check the user and password`, exitCode: 2 }
    case '3D000':
      return { message: `the database named in DATABASE_URL (${redactUrl(config?.databaseUrl ?? '')}) does not exist: create it, e.g. createdb`, exitCode: 2 }
  }
  if (err instanceof CoordinatorError) return { message: err.message, exitCode: 1 }
  const detail = err instanceof Error ? err.message : String(err)
  return { message: `coordinator failed to start: ${detail}`, exitCode: 1 }
}

/** A database URL for a log line: the password never leaves. */
export function redactUrl(raw: string): string {
  try {
    const u = new URL(raw)
    if (u.password !== '') u.password = '***'
    // libpq and node-postgres also take secrets as query parameters.
    for (const name of [...u.searchParams.keys()]) {
      if (/pass|key|secret|token/i.test(name)) u.searchParams.set(name, '***')
    }
    return u.toString()
  } catch {
    return '(unparseable URL)'
  }
}

/** The path a filesystem error names, or "the data directory". */
function fileOf(err: unknown): string {
  const p = (err as { path?: unknown } | null)?.path
  return typeof p === 'string' ? p : 'the data directory'
}
