#!/usr/bin/env node
import { envToConfig, readEnv, type Config } from './config.js'
import { readConfigFile } from './config-file.js'
import { reloadLiveConfig } from './config-reload.js'
import { CoordinatorError } from './errors.js'
import { createLogger } from './logger.js'
import { Service } from './service.js'

/**
 * Process entry: environment (and COORD_CONFIG) → config → service. Signals:
 * - SIGHUP re-reads COORD_CONFIG and swaps the live settings; before start-up completes it is
 *   logged and ignored, never fatal.
 * - SIGTERM / SIGINT drain (specs/operator-api.md) and then exit 0; a second one stops at once.
 * Sets process.exitCode; never process.exit.
 */
async function main(): Promise<void> {
  let svc: Service | null = null
  let ready = false
  const env = readEnv()
  const log = createLogger({ level: env.logLevel ?? 'info' })
  // Installed before anything slow, so that a SIGHUP during start-up cannot kill the process.
  process.on('SIGHUP', () => {
    if (!ready || svc === null) return log.warn({ event: 'config.reload_ignored' }, 'SIGHUP before start-up completed; ignored')
    reloadLiveConfig(svc.ctx)
  })
  log.info({ event: 'coordinator.starting', pid: process.pid }, 'starting')
  let config: Config
  try {
    config = envToConfig(env, {}, env.configFile ? readConfigFile(env.configFile) : {})
  } catch (err) {
    log.fatal({ err }, 'invalid configuration')
    process.exitCode = 2
    return
  }
  log.level = config.live.logLevel
  svc = await Service.create(config, { log, defaultMetrics: true })
  const service = svc
  let stopping = false
  const stop = (signal: string) => {
    const first = !stopping
    stopping = true
    log.info({ event: 'coordinator.stopping', signal, drain: first }, first ? 'stopping: draining first' : 'stopping now')
    const done = first ? service.drainAndStop(config.limits.drainTimeoutMs) : service.destroy()
    done.catch((err: unknown) => {
      log.error({ err }, 'shutdown failed')
      process.exitCode = 1
    })
  }
  process.on('SIGINT', () => stop('SIGINT'))
  process.on('SIGTERM', () => stop('SIGTERM'))
  await svc.start()
  ready = true
}

main().catch((err: unknown) => {
  const log = createLogger({ level: 'error' })
  log.fatal({ err }, err instanceof CoordinatorError ? err.message : 'coordinator failed to start')
  process.exitCode = 1
})
