import { pino, type DestinationStream, type Logger } from 'pino'
import { PinoPretty } from 'pino-pretty'

export type { Logger }

/**
 * The one place loggers and their redaction rules are made. A bearer token must never reach a
 * log: the token lives only in auth/bearer parsing and the token store, errors are reduced to
 * {name, code, message}, and requests to {method, path} with the query string dropped. The
 * redact paths are a backstop for anything that slips past the allowlists.
 */
export type LogFormat = 'json' | 'pretty'

/**
 * `pretty` is for a person at a terminal (the default when stdout is one); `json`, one object
 * per line, is for everything else. Both carry the same fields through the same redaction.
 */
export function createLogger(opts: { level: string; destination?: DestinationStream; svc?: string; format?: LogFormat }): Logger {
  const format = opts.format ?? (process.stdout.isTTY ? 'pretty' : 'json')
  // JSON lines to stdout are written asynchronously: under load, the lines logged while a write
  // is in flight go out in the next one, instead of one write(2) per line on the event loop. An
  // idle process writes each line at once, and pino flushes what is left when the process exits.
  const destination =
    opts.destination ??
    (format === 'pretty'
      ? PinoPretty({ colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,svc', singleLine: true, sync: true })
      : pino.destination({ dest: 1, sync: false }))
  return pino(
    {
      level: opts.level,
      base: { svc: opts.svc ?? 'poolcoord' },
      redact: {
        paths: ['authorization', 'token', 'bearer', 'operatorKey', 'headers.authorization', 'req.headers.authorization', '*.token', '*.authorization'],
        censor: '[redacted]',
      },
      serializers: { err: serializeError, req: serializeRequest },
    },
    destination,
  )
}

export function serializeError(err: unknown): Record<string, unknown> {
  if (err instanceof Error) {
    const out: Record<string, unknown> = { name: err.name, message: err.message }
    const code = (err as { code?: unknown }).code
    if (typeof code === 'string') out.code = code
    const cause = (err as { cause?: unknown }).cause
    if (cause instanceof Error) out.cause = serializeError(cause)
    return out
  }
  return { name: 'NonError', message: typeof err }
}

export function serializeRequest(req: { method?: string; url?: string }): Record<string, unknown> {
  return { method: req.method, path: (req.url ?? '').split('?')[0] }
}
