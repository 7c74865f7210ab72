#!/usr/bin/env node
import { envToConfig, readEnv } from './config.js'
import { CoordinatorError } from './errors.js'
import { createLogger } from './logger.js'
import { Service } from './service.js'

/** Process entry: environment → config → service. Sets process.exitCode; never process.exit. */
async function main(): Promise<void> {
  let ready = false
  const env = readEnv()
  const log = createLogger({ level: env.logLevel ?? 'info' })
  // Installed before anything slow, so that a SIGHUP during start-up cannot kill the process.
  process.on('SIGHUP', () => log.info({ event: 'coordinator.sighup', ready }, 'SIGHUP received; nothing to reload'))
  let config
  try {
    config = envToConfig(env)
  } catch (err) {
    log.fatal({ err }, 'invalid configuration')
    process.exitCode = 2
    return
  }
  const svc = await Service.create(config, { log, defaultMetrics: true })
  const stop = (signal: string) => {
    log.info({ event: 'coordinator.stopping', signal }, 'stopping')
    svc.destroy().catch((err: unknown) => {
      log.error({ err }, 'shutdown failed')
      process.exitCode = 1
    })
  }
  process.once('SIGINT', () => stop('SIGINT'))
  process.once('SIGTERM', () => stop('SIGTERM'))
  await svc.start()
  ready = true
}

main().catch((err: unknown) => {
  const log = createLogger({ level: 'error' })
  log.fatal({ err }, err instanceof CoordinatorError ? err.message : 'coordinator failed to start')
  process.exitCode = 1
})
