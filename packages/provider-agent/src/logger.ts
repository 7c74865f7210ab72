import { pino, type Logger } from 'pino'

export type { Logger }

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

/**
 * The agent's logger. A token never reaches a log: the agent logs token file paths and
 * prefixes only; the redact paths are a backstop for anything that slips through.
 */
export function createLogger(opts: { level: string }): Logger {
  return pino({
    level: opts.level,
    base: { svc: 'poolcoord-provider' },
    redact: { paths: ['authorization', 'token', '*.token', '*.authorization', 'headers.authorization'], censor: '[redacted]' },
    serializers: {
      err: (err: unknown) =>
        err instanceof Error ? { name: err.name, message: err.message, code: (err as { code?: unknown }).code } : { name: 'NonError', message: typeof err },
    },
  })
}
