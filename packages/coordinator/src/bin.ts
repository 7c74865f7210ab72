#!/usr/bin/env node
import type http from 'node:http'
import { envToConfig, readEnv, type Config } from './config.js'
import { readConfigFile } from './config-file.js'
import { reloadLiveConfig } from './config-reload.js'
import { createLogger, type LogFormat } from './logger.js'
import { Service, bindListener } from './service.js'
import { explainStartupFailure, type StartupPhase } from './startup-error.js'

/**
 * Process entry: environment (and COORD_CONFIG) → config → bound port → database → service.
 * - Settings are validated, and the port bound, before the database is opened: a wrong setting
 *   or a busy port is reported in milliseconds, not after the database set-up.
 * - A failed start logs one line naming the cause and the fix, exits 2 for a wrong setting and
 *   1 otherwise, and leaves nothing running.
 * - SIGHUP re-reads COORD_CONFIG and swaps the live settings; before start-up completes it is
 *   logged and ignored, never fatal.
 * - SIGTERM / SIGINT drain (specs/operator-api.md) and then exit 0; a second one stops at once.
 */
async function main(): Promise<void> {
  let svc: Service | null = null
  let ready = false
  const env = readEnv()
  const format: LogFormat | undefined = env.logFormat === 'json' || env.logFormat === 'pretty' ? env.logFormat : undefined
  // Level info until the settings are read: an invalid COORD_LOG_LEVEL must be reported, not thrown.
  const log = createLogger({ level: 'info', format })
  // Installed before anything slow, so that a SIGHUP during start-up cannot kill the process.
  process.on('SIGHUP', () => {
    if (!ready || svc === null) return log.warn({ event: 'config.reload_ignored' }, 'SIGHUP before start-up completed; ignored')
    reloadLiveConfig(svc.ctx)
  })
  let config: Config | null = null
  let server: http.Server | null = null
  let phase: StartupPhase = 'settings'
  try {
    config = envToConfig(env, {}, env.configFile ? readConfigFile(env.configFile) : {})
    log.level = config.live.logLevel
    log.info({ event: 'coordinator.starting', pid: process.pid }, 'starting')
    phase = 'listen'
    server = await bindListener(config)
    phase = 'database'
    const bound = server.address() as { address: string; port: number }
    log.info({ event: 'coordinator.bound', host: bound.address, port: bound.port }, 'port bound; opening the database (requests get 503 until ready)')
    svc = await Service.create(config, { log, defaultMetrics: true }, server)
  } catch (err) {
    const failure = explainStartupFailure(err, config, phase)
    log.fatal({ event: 'coordinator.start_failed', err, exit_code: failure.exitCode }, failure.message)
    process.exitCode = failure.exitCode
    server?.close()
    server?.closeAllConnections()
    // Nothing may keep a failed start alive: under systemd a lingering process is never
    // restarted. Everything was closed above; this only guards against a library's stray timer.
    setTimeout(() => process.exit(), 1000).unref()
    return
  }
  const service = svc
  const drainMs = config.limits.drainTimeoutMs
  let stopping = false
  const stop = (signal: string) => {
    const first = !stopping
    stopping = true
    log.info({ event: 'coordinator.stopping', signal, drain: first }, first ? 'stopping: draining first' : 'stopping now')
    const done = first ? service.drainAndStop(drainMs) : service.destroy()
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
  log.fatal({ err }, 'coordinator failed')
  process.exitCode = 1
  setTimeout(() => process.exit(), 1000).unref()
})
