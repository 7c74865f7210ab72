#!/usr/bin/env node
/**
 * The poolcoord-provider executable. Exit codes: 0 stopped by a signal; 1 set-up failed (state
 * files, permissions); 2 usage; 3 another instance took over this provider id (close 4006);
 * 4 the coordinator rejected this agent's frames (a configuration or version problem).
 */
import { readFileSync } from 'node:fs'
import { createLogger } from './logger.js'
import { AgentUsageError, readAgentConfig } from './agent-config.js'
import { AgentSetupError, rotateKey, setupAgent } from './agent-setup.js'

const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }

async function main(): Promise<number> {
  let config
  const argv = process.argv.slice(2)
  const rotate = argv[0] === 'rotate-key'
  try {
    config = readAgentConfig(rotate ? argv.slice(1) : argv)
  } catch (err) {
    if (err instanceof AgentUsageError) {
      process.stderr.write(`poolcoord-provider: ${err.message}\n`)
      return err.message.startsWith('Usage:') ? 0 : 2
    }
    throw err
  }
  const log = createLogger({ level: config.logLevel })
  if (rotate) {
    try {
      process.stdout.write(`${await rotateKey(config, { log, uid: process.getuid?.() ?? 0, binaryVersion: version })}\n`)
      return 0
    } catch (err) {
      if (!(err instanceof AgentSetupError)) throw err
      process.stderr.write(`poolcoord-provider rotate-key: ${err.message}\n`)
      return 1
    }
  }
  let agent
  try {
    agent = await setupAgent(config, { log, uid: process.getuid?.() ?? 0, binaryVersion: `poolcoord-provider/${version}` })
  } catch (err) {
    if (err instanceof AgentSetupError) {
      log.fatal({ event: 'agent.setup_failed' }, err.message)
      return 1
    }
    throw err
  }
  let signals = 0
  const onSignal = (): void => {
    if (++signals > 1) process.exit(1)
    log.info({ event: 'agent.stopping' }, 'stopping: finishing requests in flight (a second signal stops at once)')
    void agent.stop()
  }
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)
  // SIGHUP: read the identity key file again and announce a next key that rotate-key left there.
  process.on('SIGHUP', () => void agent.reloadIdentity())
  const exit = await agent.run()
  if (exit.reason === 'stopped') return 0
  return exit.reason === 'replaced' ? 3 : 4
}

process.exitCode = await main()
