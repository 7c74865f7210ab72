/**
 * The agent's files on disk: a token per (coordinator URL, provider id), and the generated
 * provider id. They hold a credential, so every write and read is defensive:
 *
 * - Writes are atomic and never follow a link. The content goes to a new file created with
 *   O_EXCL (mode 0600), is fsynced, then renamed over the target. rename() replaces a symlink
 *   planted at the target instead of writing through it, and a crash leaves either the old file
 *   or the new one, never half of one.
 * - Reads open with O_NOFOLLOW and check the opened file itself (fstat, not a separate lstat), so
 *   a symlink, a non-regular file, a file owned by another user or one others can read or write
 *   is refused with a message saying what to do, never trusted.
 * - A file that is not what we wrote (bad JSON, wrong shape, for another URL or id) is corrupt:
 *   it is moved aside, so the operator can inspect it, and the caller carries on without it.
 */
import { createHash, randomBytes } from 'node:crypto'
import { constants } from 'node:fs'
import { lstat, mkdir, open, rename, unlink, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { PROVIDER_ID_RE, TOKEN_RE } from '@poolcoord/protocol'

const MAX_STATE_BYTES = 64 * 1024

export type Loaded<T> =
  | { kind: 'missing' }
  | { kind: 'ok'; value: T }
  /** The file exists but must not be used; nothing was changed. */
  | { kind: 'refused'; message: string }
  /** The file held something else; it was moved to movedTo (null if even that failed). */
  | { kind: 'corrupt'; message: string; movedTo: string | null }

export interface TokenState {
  coordinatorUrl: string
  providerId: string
  token: string
}

/** Not secret: a digest of the URL and the id, so identities and coordinators never share a file. */
export function tokenStatePath(dir: string, coordinatorUrl: string, providerId: string): string {
  const key = createHash('sha256').update(`${coordinatorUrl}\n${providerId}`).digest('hex').slice(0, 32)
  return join(dir, `token-${key}.json`)
}

export function identityPath(dir: string): string {
  return join(dir, 'identity.json')
}

/** Creates the state directory (0700) if needed, and checks that it is ours and private. */
export async function ensureStateDir(dir: string, uid: number): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 })
  let fh: FileHandle
  try {
    fh = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    // O_NOFOLLOW on a link gives ELOOP, or ENOTDIR together with O_DIRECTORY.
    if ((code === 'ELOOP' || code === 'ENOTDIR') && (await lstat(dir)).isSymbolicLink()) {
      throw new Error(`state directory ${dir} is a symbolic link; point --state-dir at a real directory owned by this user`)
    }
    if (code === 'ENOTDIR') throw new Error(`state directory ${dir} is not a directory`)
    throw err
  }
  try {
    const st = await fh.stat()
    if (st.uid !== uid) {
      throw new Error(`state directory ${dir} is owned by uid ${st.uid}, not by this user (uid ${uid}); use a directory of your own`)
    }
    if ((st.mode & 0o022) !== 0) {
      throw new Error(`state directory ${dir} is writable by other users; run: chmod 700 ${dir}`)
    }
  } finally {
    await fh.close()
  }
}

/** Atomic, link-safe, private write (see the module comment). */
export async function writeStateFile(path: string, content: string): Promise<void> {
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`
  const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600)
  try {
    try {
      await fh.writeFile(content)
      await fh.sync()
    } finally {
      await fh.close()
    }
    await rename(tmp, path)
  } catch (err) {
    await unlink(tmp).catch(() => {})
    throw err
  }
  // The rename is durable only once the directory entry is.
  const dir = await open(join(path, '..'), constants.O_RDONLY | constants.O_DIRECTORY)
  try {
    await dir.sync()
  } finally {
    await dir.close()
  }
}

/**
 * Reads and validates a state file; never follows a link, never trusts another user's file.
 * `validate` returns the value, or a string saying what is wrong, so T must not be a string.
 */
export async function readStateFile<T>(path: string, uid: number, validate: (v: unknown) => T | string): Promise<Loaded<T>> {
  let fh: FileHandle
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return { kind: 'missing' }
    if (code === 'ELOOP') {
      return {
        kind: 'refused',
        message: `${path} is a symbolic link, not a file this agent wrote; refusing to read it. Remove the link (rm ${path}) and restart`,
      }
    }
    return { kind: 'refused', message: `cannot open ${path} (${code ?? 'error'}); fix its permissions so this user can read it, then restart` }
  }
  let text: string
  try {
    const st = await fh.stat()
    if (!st.isFile()) return { kind: 'refused', message: `${path} is not a regular file; remove it and restart` }
    if (st.uid !== uid) {
      return {
        kind: 'refused',
        message: `${path} is owned by uid ${st.uid}, not by this user (uid ${uid}); refusing to trust it. Remove it, or run the agent as its owner`,
      }
    }
    if ((st.mode & 0o022) !== 0) {
      return { kind: 'refused', message: `${path} is writable by other users, so its content cannot be trusted; check it, then run: chmod 600 ${path}` }
    }
    if ((st.mode & 0o044) !== 0) {
      return {
        kind: 'refused',
        message: `${path} is readable by other users, so its token may have been copied; have the operator revoke it and issue a new one, or, if nobody else can have read it, run: chmod 600 ${path}`,
      }
    }
    if (st.size > MAX_STATE_BYTES) return moveAside(path, `${path} is ${st.size} bytes, far larger than a state file`)
    text = await fh.readFile('utf8')
  } finally {
    await fh.close()
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return moveAside(path, `${path} is not valid JSON`)
  }
  const value = validate(parsed)
  if (typeof value === 'string') return moveAside(path, `${path} ${value}`)
  return { kind: 'ok', value }
}

async function moveAside(path: string, message: string): Promise<Loaded<never>> {
  const movedTo = `${path}.corrupt-${Date.now()}`
  try {
    await rename(path, movedTo)
    return { kind: 'corrupt', message, movedTo }
  } catch {
    return { kind: 'corrupt', message, movedTo: null }
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** A validator for the token file of exactly this URL and id. */
export function tokenStateValidator(coordinatorUrl: string, providerId: string): (v: unknown) => TokenState | string {
  return (v) => {
    if (!isRecord(v) || v.version !== 1) return 'is not a version-1 token file'
    if (v.coordinator_url !== coordinatorUrl || v.provider_id !== providerId) {
      return 'belongs to another coordinator URL or provider id'
    }
    if (typeof v.token !== 'string' || !TOKEN_RE.test(v.token)) return 'holds no well-formed token'
    return { coordinatorUrl, providerId, token: v.token }
  }
}

export function serializeTokenState(s: TokenState, now: Date): string {
  return `${JSON.stringify({ version: 1, coordinator_url: s.coordinatorUrl, provider_id: s.providerId, token: s.token, saved_at: now.toISOString() }, null, 2)}\n`
}

export function identityValidator(v: unknown): { providerId: string } | string {
  if (!isRecord(v) || v.version !== 1 || typeof v.provider_id !== 'string' || !PROVIDER_ID_RE.test(v.provider_id)) {
    return 'is not a version-1 identity file'
  }
  return { providerId: v.provider_id }
}

/** A new stable id: the host name (cleaned, shortened) and 8 random hex characters. */
export function generateProviderId(hostname: string): string {
  const host = hostname
    .toLowerCase()
    .replace(/[^a-z0-9_.-]+/g, '-')
    .replace(/^[-.]+|[-.]+$/g, '')
    .slice(0, 40)
  return `${host || 'provider'}-${randomBytes(4).toString('hex')}`
}

export function serializeIdentity(providerId: string, now: Date): string {
  return `${JSON.stringify({ version: 1, provider_id: providerId, created_at: now.toISOString() }, null, 2)}\n`
}
