import { readFileSync } from 'node:fs'
import { createServer } from 'node:net'

/**
 * A loopback port that nothing listens on, for a server a test starts by port number
 * (nats-server, a private PostgreSQL) or for "nothing answers there". It is taken below the
 * kernel's ephemeral range, where no server of the tests binds (they all listen on port 0): a
 * port released back into that range can go to another test file's server a moment later. CI
 * saw it: a coordinator of another file, holding the same operator key, answered on the port
 * that cli.test.ts had released to mean "no coordinator". Checked free by binding it. From 20000
 * up, because fetch refuses the well-known "bad ports" (9, 10080, ...) before it connects.
 */
export async function unusedPort(): Promise<number> {
  const below = ephemeralLow()
  for (let i = 0; i < 100; i++) {
    const port = 20000 + Math.floor(Math.random() * (below - 20000))
    if (await bindable(port)) return port
  }
  throw new Error(`no free port in 20000-${below - 1}`)
}

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}

/** The first port of Linux's ephemeral range; the usual 32768 elsewhere, or if it is set oddly low. */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0])
    if (Number.isInteger(low) && low > 21000) return low
  } catch {
    // not Linux
  }
  return 32768
}
