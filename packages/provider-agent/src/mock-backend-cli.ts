#!/usr/bin/env node
/** poolcoord-mock-backend: the mock OpenAI-compatible server (mock-backend.ts) as a process. */
import { Command, InvalidArgumentError } from 'commander'
import { MockBackend } from './mock-backend.js'

function int(name: string, max: number): (v: string) => number {
  return (v) => {
    if (!/^\d+$/.test(v) || Number(v) > max) throw new InvalidArgumentError(`${name} must be an integer from 0 to ${max}`)
    return Number(v)
  }
}

const program = new Command('poolcoord-mock-backend')
  .description(
    'A deterministic OpenAI-compatible server for tests, demos and benchmarks. Put "mock:error=429", "mock:hang", "mock:tokens=N" or "mock:cut=N" at the start of the last message to inject behaviour.',
  )
  .option('--host <addr>', 'listen address', '127.0.0.1')
  .option('--port <n>', 'listen port (0: any free port)', int('--port', 65535), 11435)
  .option('--model <id...>', 'models to serve', ['mock-llama'])
  .option('--tokens <n>', 'tokens per answer', int('--tokens', 100_000), 16)
  .option('--latency-ms <n>', 'delay before the first token', int('--latency-ms', 600_000), 0)
  .option('--token-rate <n>', 'tokens per second after the first; 0 sends them at once', int('--token-rate', 1_000_000), 0)
  .option('--fail-every <n>', 'every n-th request fails with 500; 0 never', int('--fail-every', 1_000_000), 0)
  .parse()

const o = program.opts<{ host: string; port: number; model: string[]; tokens: number; latencyMs: number; tokenRate: number; failEvery: number }>()
const mock = await MockBackend.start({
  host: o.host,
  port: o.port,
  models: o.model,
  tokens: o.tokens,
  latencyMs: o.latencyMs,
  tokenRate: o.tokenRate,
  failEvery: o.failEvery,
})
process.stdout.write(`${JSON.stringify({ event: 'mock_backend.listening', url: mock.url, models: mock.models })}\n`)
const stop = (): void => void mock.close().then(() => process.exit(0))
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
