import { fork, spawn } from 'node:child_process'
import { once } from 'node:events'
import path from 'node:path'

/**
 * Every child the bench starts is tracked here, so that a failure or a Ctrl-C still stops them
 * all. Children forked with IPC also exit on their own when the runner goes away.
 */
const live = new Set()

function track(child, name) {
  child.benchName = name
  live.add(child)
  child.once('exit', () => live.delete(child))
  return child
}

/** Forks a bench .mjs with an IPC channel. `profileDir` adds --cpu-prof (written when it exits). */
export function forkChild(script, args = [], opts = {}, profile = null) {
  if (profile !== null) {
    opts = { ...opts, execArgv: ['--cpu-prof', `--cpu-prof-dir=${profile.dir}`, `--cpu-prof-name=${profile.name}.cpuprofile`] }
  }
  const child = fork(script, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], ...opts })
  child.benchForked = true
  return track(child, `${path.basename(script)} ${args.join(' ')}`.trim())
}

/** Spawns a plain process (the coordinator). */
export function spawnChild(cmd, args, opts = {}) {
  return track(spawn(cmd, args, opts), `${cmd} ${args.join(' ')}`)
}

/**
 * Stops a child: forked bench children first get their IPC channel closed, on which they exit
 * by themselves (so that a --cpu-prof profile gets written); then SIGTERM, then SIGKILL after
 * graceMs. Resolves with the exit code (null if killed).
 */
export async function stopChild(child, graceMs = 5000) {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode
  const exited = once(child, 'exit')
  if (child.benchForked && child.connected) {
    child.disconnect()
    const gone = await Promise.race([exited.then(() => true), new Promise((r) => setTimeout(() => r(false), 2000))])
    if (gone) return child.exitCode
  }
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
  const [code] = await exited
  clearTimeout(timer)
  return code
}

export async function stopAll() {
  await Promise.all([...live].map((c) => stopChild(c, 3000)))
}

/** Waits for one IPC message of the given type from a child; rejects if it exits first. */
export function nextMessage(child, type, timeoutMs = 60_000) {
  return new Promise((resolve, reject) => {
    const onMessage = (m) => {
      if (m?.type !== type) return
      cleanup()
      resolve(m)
    }
    const onExit = (code) => {
      cleanup()
      reject(new Error(`${child.benchName} exited (${code}) while waiting for ${type}`))
    }
    const timer = setTimeout(() => {
      cleanup()
      reject(new Error(`${child.benchName}: no ${type} within ${timeoutMs} ms`))
    }, timeoutMs)
    function cleanup() {
      clearTimeout(timer)
      child.off('message', onMessage)
      child.off('exit', onExit)
    }
    child.on('message', onMessage)
    child.once('exit', onExit)
  })
}

/** Sends a command to a child and waits for its reply of type `${cmd}:done`. */
export function request(child, msg, timeoutMs) {
  const reply = nextMessage(child, `${msg.cmd}:done`, timeoutMs)
  child.send(msg)
  return reply
}

/** Installs the last-resort cleanup: signals and fatal errors stop every child. */
export function installCleanup(onCleanup) {
  let cleaning = false
  const bail = async (why, code) => {
    if (cleaning) return
    cleaning = true
    console.error(`bench: ${why}; stopping children`)
    try {
      await stopAll()
      await onCleanup?.()
    } finally {
      process.exit(code)
    }
  }
  process.on('SIGINT', () => void bail('interrupted', 130))
  process.on('SIGTERM', () => void bail('terminated', 143))
  process.on('uncaughtException', (err) => {
    console.error(err)
    void bail('uncaught exception', 1)
  })
  process.on('unhandledRejection', (err) => {
    console.error(err)
    void bail('unhandled rejection', 1)
  })
}

export function liveChildren() {
  return [...live].map((c) => ({ pid: c.pid, name: c.benchName }))
}
