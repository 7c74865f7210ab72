import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { spawnChild, stopChild } from './children.mjs'
import { freePort } from './coordinator.mjs'

/** Debian's nats-server (apt-get install nats-server), as the coordinator's own tests use it; $NATS_SERVER overrides. */
export const NATS_SERVER_BIN = process.env.NATS_SERVER ?? '/usr/sbin/nats-server'

/**
 * A private nats-server for one cluster: loopback only, JetStream on, its store under `dir`.
 * The coordinator refuses a server whose max_payload is below 4 MiB + 64 KiB (the largest relayed
 * request plus headers), and the default is 1 MiB, hence the config file. Tracked like every
 * other child, so a failed run still stops it.
 */
export async function startNatsServer({ dir }) {
  if (!existsSync(NATS_SERVER_BIN)) throw new Error(`${NATS_SERVER_BIN} not found: apt-get install nats-server (or set NATS_SERVER)`)
  mkdirSync(dir, { recursive: true })
  const conf = path.join(dir, 'nats.conf')
  writeFileSync(conf, 'max_payload: 8MB\n')
  const port = await freePort()
  // The monitoring port gives message and subscription counts: what a remote request costs NATS.
  const monitorPort = await freePort()
  const args = ['-a', '127.0.0.1', '-p', String(port), '-m', String(monitorPort), '-js', '-sd', path.join(dir, 'store'), '-c', conf]
  const child = spawnChild(NATS_SERVER_BIN, args, {
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let log = ''
  let settled = false
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`nats-server not ready within 10 s:\n${log}`)), 10_000)
    const onData = (d) => {
      // Only the start-up lines are kept: the server logs little afterwards, but nobody reads it.
      if (log.length < 20_000) log += d.toString()
      if (log.includes('Server is ready')) done()
    }
    const onExit = (code) => done(new Error(`nats-server exited (${code}) at start-up:\n${log}`))
    function done(err) {
      if (settled) return
      settled = true
      clearTimeout(timer)
      child.stderr.off('data', onData)
      child.off('exit', onExit)
      // Keep draining stderr so that a chatty server never blocks on a full pipe.
      child.stderr.resume()
      if (err) stopChild(child, 1000).finally(() => reject(err))
      else resolve()
    }
    child.stderr.on('data', onData)
    child.once('exit', onExit)
    child.once('error', (err) => done(err))
  })
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    pid: child.pid,
    child,
    stop: () => stopChild(child, 3000),
    /** Server-wide message counts and the subscription list's inserts and removes (SUB/UNSUB churn). */
    async counters() {
      const get = async (what) => (await fetch(`http://127.0.0.1:${monitorPort}/${what}`)).json()
      const [varz, subsz] = await Promise.all([get('varz'), get('subsz')])
      return {
        inMsgs: varz.in_msgs,
        outMsgs: varz.out_msgs,
        inBytes: varz.in_bytes,
        outBytes: varz.out_bytes,
        subInserts: subsz.num_inserts,
        subRemoves: subsz.num_removes,
      }
    },
    /** Messages and bytes a JetStream stream holds now (a KV bucket is the stream KV_<bucket>). */
    async stream(name) {
      const jsz = await (await fetch(`http://127.0.0.1:${monitorPort}/jsz?streams=true`)).json()
      for (const account of jsz.account_details ?? []) {
        for (const st of account.stream_detail ?? []) if (st.name === name) return { messages: st.state.messages, bytes: st.state.bytes }
      }
      return null
    },
  }
}
