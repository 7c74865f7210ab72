import net from 'node:net'

export interface RawResponse {
  status: number
  /** Lower-cased names; repeated headers joined with ', '. */
  headers: Record<string, string>
  body: Buffer
}

/**
 * What came back for one request written as raw bytes: a response, the connection closed with
 * `bytes` received that do not make one (0: closed without a word), or nothing before the deadline.
 */
export type RawOutcome = { response: RawResponse } | { closed: { bytes: number } } | { timeout: true }

/**
 * Writes `request` on a fresh connection and reads until the server closes it. Requests should
 * say `Connection: close`; the client never half-closes, since Node's server drops a request whose
 * client did (httpAllowHalfOpen is off).
 */
export function rawHttp(port: number, request: Buffer, timeoutMs: number): Promise<RawOutcome> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    const parts: Buffer[] = []
    const timer = setTimeout(() => {
      socket.destroy()
      resolve({ timeout: true })
    }, timeoutMs)
    socket.on('data', (d) => parts.push(d))
    socket.on('error', () => undefined) // a reset is a close; 'close' follows
    socket.on('close', () => {
      clearTimeout(timer)
      const all = Buffer.concat(parts)
      const response = parseResponse(all)
      resolve(response === null ? { closed: { bytes: all.length } } : { response })
    })
    socket.write(request)
  })
}

/** The final response in `bytes` (1xx interim answers skipped), or null if it is not a whole one. */
export function parseResponse(bytes: Buffer): RawResponse | null {
  let at = 0
  for (;;) {
    const end = bytes.indexOf('\r\n\r\n', at)
    if (end < 0) return null
    const lines = bytes.subarray(at, end).toString('latin1').split('\r\n')
    const m = /^HTTP\/1\.1 (\d{3}) /.exec(`${lines[0] ?? ''} `)
    if (m === null) return null
    const status = Number(m[1])
    const headers: Record<string, string> = {}
    for (const line of lines.slice(1)) {
      const i = line.indexOf(':')
      if (i <= 0) return null
      const name = line.slice(0, i).trim().toLowerCase()
      const value = line.slice(i + 1).trim()
      headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`
    }
    at = end + 4
    if (status >= 100 && status < 200) continue
    const rest = bytes.subarray(at)
    if (headers['transfer-encoding'] === 'chunked') {
      const body = unchunk(rest)
      return body === null ? null : { status, headers, body }
    }
    const length = headers['content-length']
    if (length !== undefined) {
      const n = Number(length)
      return rest.length < n ? null : { status, headers, body: rest.subarray(0, n) }
    }
    return { status, headers, body: rest }
  }
}

function unchunk(bytes: Buffer): Buffer | null {
  const out: Buffer[] = []
  let at = 0
  for (;;) {
    const eol = bytes.indexOf('\r\n', at)
    if (eol < 0) return null
    const size = parseInt(bytes.subarray(at, eol).toString('latin1'), 16)
    if (!Number.isInteger(size)) return null
    if (size === 0) return Buffer.concat(out)
    if (eol + 2 + size > bytes.length) return null
    out.push(bytes.subarray(eol + 2, eol + 2 + size))
    at = eol + 2 + size + 2
  }
}
