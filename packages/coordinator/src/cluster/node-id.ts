import { randomBytes, randomUUID } from 'node:crypto'
import { closeSync, fsyncSync, linkSync, lstatSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs'
import { hostname } from 'node:os'
import path from 'node:path'
import { checkNodeId } from '../config.js'
import { ConfigError } from '../errors.js'
import type { Logger } from '../logger.js'

export const NODE_ID_FILE = 'node-id'

/**
 * The configured node id (COORD_NODE_ID), or the one kept in <dataDir>/node-id, generated on
 * first start. It is stable across restarts so that logs, metrics and the other nodes keep one
 * name for this node; what changes at every start is the incarnation (newIncarnation).
 */
export function resolveNodeId(configured: string | null, dataDir: string, log: Logger): string {
  if (configured !== null) return configured
  const file = path.resolve(dataDir, NODE_ID_FILE)
  const existing = readNodeIdFile(file)
  if (existing !== null) return existing
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 })
  const id = generateNodeId(hostname(), randomBytes(4).toString('hex'))
  // Written aside, then linked into place: link(2) never replaces an existing file, so of two
  // processes starting on one data dir both end up with the id that was written first, and no
  // reader ever sees a half-written file (rename(2) would let the second overwrite the first).
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
  const fd = openSync(tmp, 'wx', 0o600)
  try {
    writeSync(fd, `${id}\n`)
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  try {
    linkSync(tmp, file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    return readNodeIdFile(file) ?? id
  } finally {
    rmSync(tmp, { force: true })
  }
  log.info({ event: 'node_id.generated', node_id: id, path: file }, 'generated this node id; it is kept in this file')
  return id
}

/** A fresh id per start: it tells the cluster this process from an earlier one of the same node. */
export function newIncarnation(): string {
  return randomUUID()
}

/** `<host name, made subject-safe>-<8 hex>`: readable in logs, unique when two hosts share a name. */
export function generateNodeId(host: string, suffix: string): string {
  const base = host
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+/, '')
    .slice(0, 40)
    .replace(/-+$/, '')
  return `${base === '' ? 'node' : base}-${suffix}`
}

function readNodeIdFile(file: string): string | null {
  let text: string
  try {
    const st = lstatSync(file)
    if (!st.isFile()) throw new ConfigError(`${file} must be a regular file, not a link`)
    text = readFileSync(file, 'utf8').trim()
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw err
  }
  checkNodeId(text, `${file} (delete it to generate a new id, or set COORD_NODE_ID)`)
  return text
}
