import { readFileSync, readdirSync } from 'node:fs'
import path from 'node:path'

/**
 * Self time per function and per module from a V8 .cpuprofile (as written by node --cpu-prof),
 * as a share of the non-idle samples.
 */
export function summarizeProfile(file, top = 15) {
  const prof = JSON.parse(readFileSync(file, 'utf8'))
  const byId = new Map(prof.nodes.map((n) => [n.id, n]))
  const parent = new Map()
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const ownerOf = ownerFinder(byId, parent)
  const selfUs = new Map()
  for (let i = 0; i < prof.samples.length; i++) {
    const id = prof.samples[i]
    selfUs.set(id, (selfUs.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0))
  }
  const fns = new Map()
  const modules = new Map()
  const owners = new Map()
  let busy = 0
  let idle = 0
  for (const [id, us] of selfUs) {
    const { functionName, url, lineNumber } = byId.get(id).callFrame
    if (functionName === '(idle)') {
      idle += us
      continue
    }
    busy += us
    const where = shortUrl(url)
    const key = `${functionName || '(anonymous)'} ${where}${where ? `:${lineNumber + 1}` : ''}`.trim()
    fns.set(key, (fns.get(key) ?? 0) + us)
    const mod = moduleOf(url, functionName)
    modules.set(mod, (modules.get(mod) ?? 0) + us)
    const owner = ownerOf(id)
    owners.set(owner, (owners.get(owner) ?? 0) + us)
  }
  const rank = (m) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({ name, selfMs: us / 1000, pct: (100 * us) / busy }))
  return { file: path.basename(file), busyMs: busy / 1000, idleMs: idle / 1000, functions: rank(fns), modules: rank(modules), owners: rank(owners) }
}

/**
 * The nearest coordinator function (dist/) on a sample's stack: "who caused this time",
 * with library, runtime and kernel time charged to the coordinator code that called it.
 */
function ownerFinder(byId, parent) {
  const cache = new Map()
  const find = (id) => {
    if (cache.has(id)) return cache.get(id)
    const { functionName, url, lineNumber } = byId.get(id).callFrame
    let owner
    if (url.includes('/dist/') && !url.includes('node_modules/')) owner = `${functionName || '(anonymous)'} ${shortUrl(url)}:${lineNumber + 1}`
    else if (parent.has(id)) owner = find(parent.get(id))
    else owner = null
    cache.set(id, owner)
    return owner
  }
  // Outside coordinator code (a library's or the runtime's own callback): name the nearest package.
  const fallback = (id) => {
    for (let p = id; p !== undefined; p = parent.get(p)) {
      const { url } = byId.get(p).callFrame
      if (url.includes('node_modules/')) return `(${moduleOf(url, '')} callback)`
    }
    for (let p = id; p !== undefined; p = parent.get(p)) {
      const { url } = byId.get(p).callFrame
      if (url.startsWith('node:')) return `(${url.split(':')[1].split('/')[0] === 'internal' ? moduleOf(url, '') : url} callback)`
    }
    return byId.get(id).callFrame.functionName || '(native)'
  }
  return (id) => find(id) ?? fallback(id)
}

function shortUrl(url) {
  if (!url) return ''
  const s = url.replace(/^file:\/\//, '')
  const nm = s.lastIndexOf('node_modules/')
  if (nm >= 0) return s.slice(nm + 'node_modules/'.length)
  const dist = s.indexOf('/dist/')
  if (dist >= 0) return s.slice(dist + 1)
  return s
}

function moduleOf(url, functionName) {
  if (!url) return functionName.startsWith('(') ? functionName : '(native)'
  const s = url.replace(/^file:\/\//, '')
  const nm = s.lastIndexOf('node_modules/')
  if (nm >= 0) {
    const rest = s.slice(nm + 'node_modules/'.length).split('/')
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]
  }
  if (s.startsWith('node:')) return s.split('/')[0].replace(/^node:internal.*/, 'node:internal')
  const dist = s.indexOf('/dist/')
  if (dist >= 0) return s.slice(dist + 1)
  return s
}

export function summarizeProfiles(dir) {
  let files = []
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'))
  } catch {
    return []
  }
  return files.sort().map((f) => summarizeProfile(path.join(dir, f)))
}
