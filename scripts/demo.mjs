/**
 * `npm run demo`: a newcomer's first five minutes. Starts a coordinator on the embedded
 * database, two provider agents in front of two mock backends, and sends one streaming request
 * with the official openai client, printing the tokens as they arrive. Everything runs as real
 * processes on loopback and is cleaned up at the end. It runs the built packages (npm run build).
 */
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import OpenAI from 'openai'

const root = new URL('../packages/', import.meta.url)
/** @type {Array<{ name: string, proc: import('node:child_process').ChildProcess, log: string[] }>} */
const children = []

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

function start(name, script, args, env = {}) {
  const proc = spawn(process.execPath, [new URL(script, root).pathname, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const log = []
  proc.stdout.on('data', (b) => log.push(b.toString()))
  proc.stderr.on('data', (b) => log.push(b.toString()))
  children.push({ name, proc, log })
}

async function until(what, probe, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await probe().catch(() => undefined)
    if (v !== undefined) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 200))
  }
}

const say = (s) => void process.stdout.write(`${s}\n`)

async function main() {
  const work = await mkdtemp(join(tmpdir(), 'poolcoord-demo-'))
  try {
    const [coordPort, mockA, mockB] = [await freePort(), await freePort(), await freePort()]
    const base = `http://127.0.0.1:${coordPort}`
    const ws = `ws://127.0.0.1:${coordPort}/ws/provider`

    say(`1. coordinator on ${base} (embedded PostgreSQL in ${work}/data)`)
    start('coordinator', 'coordinator/dist/bin.js', [], { COORD_PORT: String(coordPort), COORD_DATA_DIR: join(work, 'data'), COORD_LOG_LEVEL: 'warn' })
    await until('the coordinator', async () => ((await fetch(`${base}/healthz`)).ok ? true : undefined))
    const key = (await readFile(join(work, 'data', 'operator-key'), 'utf8')).trim()

    say('2. two mock OpenAI-compatible backends, each with a provider agent dialing out to the coordinator')
    for (const [i, port] of [mockA, mockB].entries()) {
      start(`mock-${i + 1}`, 'provider-agent/dist/mock-backend-cli.js', [
        '--port',
        String(port),
        '--model',
        'mock-llama',
        '--token-rate',
        '20',
        '--tokens',
        '22',
      ])
      start(`agent-${i + 1}`, 'provider-agent/dist/poolcoord-provider.js', [
        '--coordinator',
        ws,
        '--backend',
        `http://127.0.0.1:${port}/v1`,
        '--provider-id',
        `demo-provider-${i + 1}`,
        '--state-dir',
        join(work, `agent-${i + 1}`),
        '--max-concurrency',
        '2',
        '--log-level',
        'warn',
      ])
    }
    const pool = await until('both providers to be routable', async () => {
      const res = await fetch(`${base}/poolz`, { headers: { authorization: `Bearer ${key}` } })
      /** @type {import('@poolcoord/protocol').PoolzResponse} */
      const body = await res.json()
      const ready = body.pool.filter((p) => p.routing_eligible && p.auth_state === 'key_proven')
      return ready.length === 2 ? ready : undefined
    })
    for (const p of pool) {
      say(`   ${p.provider_id}: ${p.auth_state}, key ${p.identity.key_fingerprint} (enrolled its Ed25519 key on first connect; got a token and saved it)`)
    }

    say('3. a buyer, with the official openai client:')
    const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 })
    const { data: stream, response } = await client.chat.completions
      .create({ model: 'mock-llama', stream: true, messages: [{ role: 'user', content: 'Say something deterministic.' }] })
      .withResponse()
    process.stdout.write('   > ')
    for await (const chunk of stream) process.stdout.write(chunk.choices[0]?.delta.content ?? '')
    say('')
    say(`   served by ${response.headers.get('x-pool-provider')}, request ${response.headers.get('x-request-id')}`)
    say('')
    say('Next: README.md (quick start), specs/protocol.md (the provider protocol), docs/operations.md (running it).')
  } catch (err) {
    for (const c of children) process.stderr.write(`--- ${c.name}\n${c.log.join('').slice(-4000)}\n`)
    throw err
  } finally {
    for (const c of children.reverse()) c.proc.kill('SIGTERM')
    await Promise.all(children.map((c) => (c.proc.exitCode !== null ? undefined : new Promise((r) => c.proc.once('exit', r)))))
    await rm(work, { recursive: true, force: true })
  }
}

main().catch((err) => {
  process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exitCode = 1
})
