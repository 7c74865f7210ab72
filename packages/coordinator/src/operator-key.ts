import { randomBytes } from 'node:crypto'
import { lstatSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { checkOperatorKey } from './config.js'
import { ConfigError } from './errors.js'
import type { Logger } from './logger.js'

export const OPERATOR_KEY_FILE = 'operator-key'

/**
 * The configured key, or the one kept in <dataDir>/operator-key, generated (mode 0600) on first
 * start. The key itself is never logged; only where it is.
 */
export function resolveOperatorKey(configured: string | null, dataDir: string, log: Logger): string {
  if (configured !== null) return configured
  const existing = readOperatorKeyFile(dataDir)
  if (existing !== null) return existing
  const file = path.resolve(dataDir, OPERATOR_KEY_FILE)
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 })
  const key = randomBytes(32).toString('hex')
  // 'wx': never overwrite a key another process wrote a moment ago.
  writeFileSync(file, `${key}\n`, { mode: 0o600, flag: 'wx' })
  log.warn({ event: 'operator_key.generated', path: file }, 'generated an operator key; it is stored in this file (mode 0600)')
  return key
}

/** The key in <dataDir>/operator-key, if there is one; refuses a link, a foreign owner or loose mode. */
export function readOperatorKeyFile(dataDir: string): string | null {
  const file = path.resolve(dataDir, OPERATOR_KEY_FILE)
  let existing: string | null = null
  try {
    const st = lstatSync(file)
    if (!st.isFile()) throw new ConfigError(`${file} must be a regular file, not a link`)
    if (typeof process.getuid === 'function' && st.uid !== process.getuid()) {
      throw new ConfigError(`${file} must be owned by the user running the coordinator`)
    }
    if ((st.mode & 0o077) !== 0) {
      throw new ConfigError(`${file} is readable by other users: chmod 600 it`)
    }
    existing = readFileSync(file, 'utf8').trim()
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  if (existing !== null) checkOperatorKey(existing, file)
  return existing
}
