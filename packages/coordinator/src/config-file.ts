import { readFileSync } from 'node:fs'
import { extname } from 'node:path'
import { parse as parseYaml } from 'yaml'
import { LOG_LEVELS, type LiveSettings } from './config.js'
import { ConfigError } from './errors.js'

/** The file's keys, as operators write them, and the live settings they set. */
const KEYS: Record<string, keyof LiveSettings> = {
  require_provider_tokens: 'requireProviderTokens',
  log_level: 'logLevel',
}

/** The file key for a live setting, so logs name settings the way operators write them. */
export function fileKeyOf(setting: keyof LiveSettings): string {
  return Object.keys(KEYS).find((k) => KEYS[k] === setting) ?? setting
}

/**
 * Parses the live-settings file (COORD_CONFIG): JSON for `.json`, YAML for `.yaml`/`.yml`. Pure.
 * Strict: an unknown key is an error, so a typo (`require_provider_token: true`) is caught
 * instead of silently leaving the pool open. Absent keys keep their defaults.
 */
export function parseConfigFile(text: string, path: string): Partial<LiveSettings> {
  const ext = extname(path).toLowerCase()
  let doc: unknown
  try {
    if (ext === '.json') doc = JSON.parse(text)
    else if (ext === '.yaml' || ext === '.yml') doc = parseYaml(text)
    else throw new ConfigError('COORD_CONFIG must name a .json, .yaml or .yml file')
  } catch (err) {
    if (err instanceof ConfigError) throw err
    throw new ConfigError(`config file ${path} is not valid ${ext === '.json' ? 'JSON' : 'YAML'}`)
  }
  if (doc === null || doc === undefined) return {}
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError(`config file ${path} must hold a mapping of settings`)
  const out: Partial<LiveSettings> = {}
  for (const [key, value] of Object.entries(doc)) {
    const field = KEYS[key]
    if (field === undefined) throw new ConfigError(`config file ${path}: unknown setting "${key.slice(0, 64)}"; known: ${Object.keys(KEYS).join(', ')}`)
    if (field === 'requireProviderTokens') {
      if (typeof value !== 'boolean') throw new ConfigError(`config file ${path}: require_provider_tokens must be true or false`)
      out.requireProviderTokens = value
    } else {
      if (typeof value !== 'string' || !LOG_LEVELS.includes(value)) {
        throw new ConfigError(`config file ${path}: log_level must be one of ${LOG_LEVELS.join(', ')}`)
      }
      out.logLevel = value
    }
  }
  return out
}

/** Reads and parses the file; every failure is a ConfigError that names the file. */
export function readConfigFile(path: string): Partial<LiveSettings> {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`)
  }
  return parseConfigFile(text, path)
}
