import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fsyncPath, fsyncTree } from './fsync-tree.js'

/*
 * The ustar subset that PGlite's dumpDataDir() writes: directories ('5') and regular files ('0'
 * or NUL), names with a leading '/', relative to the data directory. Reading it ourselves lets the
 * embedded database's first start write a pre-initialised data directory straight to disk (tens
 * of milliseconds) instead of starting a second PGlite to unpack it (most of a second and its
 * memory).
 */

export interface TarEntry {
  /** Relative, '/'-separated, never absolute and never with a '..' part. */
  name: string
  kind: 'dir' | 'file'
  data: Uint8Array
}

/**
 * The entries of a data directory tarball, or null when it is not a whole one: a header checksum
 * fails, an entry is of another kind or names a path outside the directory, the archive does not
 * end exactly at its end-of-archive block, or PG_VERSION or global/pg_control is missing.
 */
export function readDataDirTar(tar: Uint8Array): TarEntry[] | null {
  const text = (at: number, len: number) =>
    Buffer.from(tar.subarray(at, at + len))
      .toString('latin1')
      .replace(/\0.*$/s, '')
  const entries: TarEntry[] = []
  let at = 0
  while (at + 512 <= tar.length) {
    const header = tar.subarray(at, at + 512)
    if (header.every((b) => b === 0)) {
      const names = new Set(entries.map((e) => e.name))
      return names.has('PG_VERSION') && names.has('global/pg_control') ? entries : null
    }
    let sum = 0
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : (header[i] as number)
    const size = parseInt(text(at + 124, 12).trim() || '0', 8)
    if (sum !== parseInt(text(at + 148, 8).trim(), 8) || !Number.isInteger(size) || size < 0) return null
    if (at + 512 + size > tar.length) return null
    const prefix = text(at + 345, 155)
    const name = `${prefix === '' ? '' : `${prefix}/`}${text(at, 100)}`.replace(/^\/+/, '').replace(/\/+$/, '')
    const type = String.fromCharCode(header[156] as number)
    const kind = type === '5' ? 'dir' : type === '0' || type === '\0' ? 'file' : null
    // '\\' and ':' too, so that no platform's path rules can read a part as a step up or a drive.
    if (kind === null || name === '' || /[\\:]/.test(name) || name.split('/').some((part) => part === '' || part === '.' || part === '..')) return null
    entries.push({ name, kind, data: tar.subarray(at + 512, at + 512 + size) })
    at += 512 + Math.ceil(size / 512) * 512
  }
  return null
}

/**
 * Writes the entries under dest (created if absent): directories 0700 and files 0600, as
 * PostgreSQL keeps its own. PG_VERSION is written last, and only once everything else is on the
 * disk (fsync), so that a crash or a power loss part-way leaves no PG_VERSION and the next start
 * knows to begin again. A file that exists already is an error, never overwritten.
 */
export function writeDataDir(entries: TarEntry[], dest: string): void {
  mkdirSync(dest, { recursive: true, mode: 0o700 })
  const write = (e: TarEntry): void => {
    const target = path.join(dest, ...e.name.split('/'))
    if (e.kind === 'dir') mkdirSync(target, { recursive: true, mode: 0o700 })
    else {
      mkdirSync(path.dirname(target), { recursive: true, mode: 0o700 })
      writeFileSync(target, e.data, { mode: 0o600, flag: 'wx' })
    }
  }
  for (const e of entries) if (e.name !== 'PG_VERSION') write(e)
  fsyncTree(dest)
  // Then only what is new: PG_VERSION and the directory that names it.
  for (const e of entries) {
    if (e.name !== 'PG_VERSION') continue
    write(e)
    fsyncPath(path.join(dest, 'PG_VERSION'))
    fsyncPath(dest)
  }
}
