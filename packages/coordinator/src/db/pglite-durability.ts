import { fsyncSync } from 'node:fs'
import path from 'node:path'
import type { PGlite } from '@electric-sql/pglite'
import { NodeFS } from '@electric-sql/pglite/nodefs'
import { fsyncPath, fsyncTree, isPermissionDenied } from './fsync-tree.js'

/**
 * Makes an embedded database on disk as crash-safe as PostgreSQL on a disk: a commit returns once
 * its WAL record is on the disk.
 *
 * Why this is ours to do: PGlite's filesystem on Node (Emscripten's NODEFS) has no fsync, so every
 * fsync PostgreSQL issues returns at once without reaching the disk, and PGlite's default start
 * parameters turn fsync off besides (`-F`). A crash of the process lost nothing (its writes were
 * in the kernel already), but a power loss or a kernel crash could lose commits or leave a data
 * directory PostgreSQL cannot start from. A lost token or pin is worse than a lost row: it turns a
 * proven identity back into one that the next tokenless connect may claim (specs/admission.md).
 *
 * So:
 * - DurableNodeFS mounts the data directory as PGlite's NodeFS does, and gives NODEFS streams an
 *   fsync that calls fsync(2) on the host file, or on the host directory for a directory
 *   (PostgreSQL syncs pg_wal after adding a segment). It does so before PostgreSQL starts
 *   (Emscripten's preRun), because start-up after a crash is recovery: PostgreSQL rewrites
 *   pg_control and removes old WAL there, and syncs the whole directory first.
 * - PostgreSQL runs with fsync on and `wal_sync_method=fsync` (PGLITE_START_PARAMS): the
 *   WebAssembly build's fdatasync, PostgreSQL's default method, never reaches the filesystem
 *   (measured: 200 commits made 0 calls with fdatasync and 200 with fsync).
 * - A failed fsync ends the process (`onFailure`). PostgreSQL treats it as a PANIC; in PGlite the
 *   next query then spins inside WebAssembly with the event loop blocked, so nothing short of an
 *   exit gets the coordinator back (systemd restarts it, and recovery replays the WAL).
 * - verifyDurable() checks, once started, that the settings took and that the directory is
 *   mounted through this filesystem: a PGlite release that changed either must stop the start,
 *   not run without durability.
 */
export class DurableNodeFS extends NodeFS {
  /** The fsyncs installed (PGlite's initdb, when it runs, is a module of its own), to check that one is in place. */
  private readonly installed = new WeakSet<object>()

  constructor(
    private readonly hostDir: string,
    private readonly onFailure: (err: unknown) => never,
  ) {
    super(hostDir)
  }

  override async init(pg: PGlite, opts: Parameters<NodeFS['init']>[1]): ReturnType<NodeFS['init']> {
    const { emscriptenOpts } = await super.init(pg, opts)
    const preRun = [
      ...(emscriptenOpts.preRun ?? []),
      (mod: unknown) => {
        this.installed.add(installFsync(nodefsOf(mod), this.onFailure))
      },
    ]
    return { emscriptenOpts: { ...emscriptenOpts, preRun } }
  }

  /**
   * After PGlite.create: the settings, the hook, and one pass over the directory for what was
   * written unsynced before (by an older release, or planted without a sync by initdb).
   */
  async verifyDurable(lite: PGlite): Promise<void> {
    const settings = await lite.query<{ fsync: string; method: string; dir: string }>(
      "SELECT current_setting('fsync') AS fsync, current_setting('wal_sync_method') AS method, current_setting('data_directory') AS dir",
    )
    const row = settings.rows[0]
    if (row?.fsync !== 'on' || row.method !== 'fsync')
      throw new Error(`the embedded database started with fsync=${row?.fsync} and wal_sync_method=${row?.method}, not on and fsync`)
    // The data directory is this host directory, mounted through NODEFS, whose fsync is ours.
    const fs = (lite.Module as unknown as { FS: EmscriptenFs }).FS
    const mount = fs.lookupPath(row.dir).node?.mount
    const nodefs = nodefsOf(lite.Module)
    if (mount?.type !== nodefs || mount.opts?.root !== this.hostDir || !this.installed.has(nodefs.stream_ops.fsync ?? {})) {
      throw new Error('the embedded database is not mounted through the filesystem that syncs it')
    }
    try {
      fsyncTree(this.hostDir)
      // And the name of the directory itself, made on a first start.
      fsyncPath(path.dirname(this.hostDir))
    } catch (err) {
      this.onFailure(err)
    }
  }
}

interface EmscriptenFs {
  lookupPath(p: string): { node?: { mount?: { type?: unknown; opts?: { root?: string } } } }
}

interface NodefsStream {
  /** The host file descriptor; NODEFS opens one for regular files only. */
  nfd?: number
  node: unknown
}

interface Nodefs {
  stream_ops: { fsync?: (stream: NodefsStream) => number }
  realPath(node: unknown): string
}

/**
 * A directory this process may not open is not the database's (a mount point's lost+found, owned
 * by root, which PostgreSQL's own sync of its directory reaches): skipped, as PostgreSQL skips
 * what it cannot open there. Any other failure is fatal.
 */
function installFsync(nodefs: Nodefs, onFailure: (err: unknown) => never): object {
  const fsync = (stream: NodefsStream): number => {
    try {
      if (stream.nfd !== undefined) fsyncSync(stream.nfd)
      else fsyncPath(nodefs.realPath(stream.node))
    } catch (err) {
      if (stream.nfd === undefined && isPermissionDenied(err)) return 0
      onFailure(err)
    }
    return 0
  }
  nodefs.stream_ops.fsync = fsync
  return fsync
}

/** Emscripten's NODEFS object in a PGlite module. Not part of PGlite's typed API, so its shape is checked. */
function nodefsOf(mod: unknown): Nodefs {
  const fs = (mod as { FS?: { filesystems?: Record<string, unknown> } } | undefined)?.FS?.filesystems?.NODEFS as Partial<Nodefs> | undefined
  if (fs === undefined || typeof fs.stream_ops !== 'object' || typeof fs.realPath !== 'function') {
    throw new Error("this PGlite's Node filesystem is not the one poolcoord knows how to make durable (db/pglite-durability.ts)")
  }
  return fs as Nodefs
}
