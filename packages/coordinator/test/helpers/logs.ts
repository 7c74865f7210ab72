import { createLogger, type Logger } from '../../src/logger.js'

export interface CapturedLogs {
  logger: Logger
  /** Every line the logger wrote, raw, exactly as it would reach stdout. */
  lines: string[]
  /** Parsed lines whose `event` field equals the given name. */
  events(name: string): Record<string, unknown>[]
  text(): string
}

export function captureLogs(level = 'debug'): CapturedLogs {
  const lines: string[] = []
  const logger = createLogger({ level, destination: { write: (s: string) => void lines.push(s) } })
  return {
    logger,
    lines,
    events: (name) => lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.event === name),
    text: () => lines.join(''),
  }
}
