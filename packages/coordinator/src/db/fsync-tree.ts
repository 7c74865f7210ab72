import { closeSync, fsyncSync, openSync, readdirSync } from 'node:fs'
import path from 'node:path'

/** fsync(2) on one file or directory, by path. */
export function fsyncPath(p: string): void {
  const fd = openSync(p, 'r')
  try {
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}

/**
 * fsync(2) on every file and directory under dir, then on dir itself (children before their
 * parent, so that a name is durable only once what it names is). Symbolic links are not followed.
 * An entry this process may not open is skipped, as PostgreSQL skips it when it syncs its data
 * directory: it is not the database's (a mount point's lost+found, owned by root).
 */
export function fsyncTree(dir: string): void {
  fsyncEntries(dir)
  fsyncPath(dir)
}

function fsyncEntries(dir: string): void {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name)
    try {
      if (entry.isDirectory()) fsyncTree(p)
      else if (entry.isFile()) fsyncPath(p)
    } catch (err) {
      if (!isPermissionDenied(err)) throw err
    }
  }
}

/** EACCES or EPERM: what this process may not open is not the database's (see fsyncTree). */
export function isPermissionDenied(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return code === 'EACCES' || code === 'EPERM'
}
