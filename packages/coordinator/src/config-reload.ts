import type { AppContext } from './app-context.js'
import { defaultLive, type LiveSettings } from './config.js'
import { fileKeyOf, readConfigFile } from './config-file.js'
import { ConfigError } from './errors.js'

export type ReloadResult = { ok: true; changed: Array<{ setting: string; from: unknown; to: unknown }> } | { ok: false; reason: string }

/**
 * SIGHUP: re-read the config file, validate it whole, and swap the live settings in one
 * assignment; or, if anything is wrong, keep the old settings and say why. The environment
 * still wins over the file. Sessions already admitted are never touched: a new
 * require_provider_tokens applies from the next upgrade.
 */
export function reloadLiveConfig(ctx: AppContext): ReloadResult {
  const path = ctx.config.configFile
  if (path === null) {
    ctx.log.info({ event: 'config.reload_skipped' }, 'SIGHUP: no COORD_CONFIG file to reload')
    return { ok: false, reason: 'no config file' }
  }
  let file: Partial<LiveSettings>
  try {
    file = readConfigFile(path)
  } catch (err) {
    const reason = err instanceof ConfigError ? err.message : 'unreadable'
    ctx.log.error({ event: 'config.reload_failed', reason }, 'config reload failed; keeping the current settings')
    return { ok: false, reason }
  }
  const before = ctx.live.get()
  const next: LiveSettings = { ...defaultLive, ...file, ...ctx.config.envLive }
  const changed = (Object.keys(next) as Array<keyof LiveSettings>)
    .filter((k) => next[k] !== before[k])
    .map((k) => ({ setting: fileKeyOf(k), from: before[k], to: next[k] }))
  ctx.live.set(next)
  if (next.logLevel !== before.logLevel) ctx.log.level = next.logLevel
  const overridden = (Object.keys(ctx.config.envLive) as Array<keyof LiveSettings>).filter((k) => k in file).map(fileKeyOf)
  ctx.log.info({ event: 'config.reloaded', changed, env_overrides: overridden }, changed.length ? 'config reloaded' : 'config reloaded; nothing changed')
  return { ok: true, changed }
}
