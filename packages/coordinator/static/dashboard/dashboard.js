// poolcoord operator dashboard (specs/operator-api.md, "Dashboard"). A plain ES module, no
// build step, no dependencies. It reads /poolz and /admin/stats every 2 s with the operator key
// typed into the page, and cordons or uncordons through the admin API.
//
// - The key lives in this tab only: a variable and sessionStorage. Never a URL, localStorage or
//   a cookie; it is sent as `Authorization: Bearer <key>` to this origin only.
// - Every value from the API, provider-supplied strings above all (provider_id, hostname,
//   models), reaches the page as text (textContent, attributes), never as markup.
// - On 401 the page drops the key, stops polling and removes everything it showed of the pool.

const KEY_STORE = 'poolcoord.operatorKey'
const POLL_MS = 2000
const AUTH_STATES = ['key_proven', 'bearer_validated', 'self_minted', 'bearerless_duplicate']
const SVG_NS = 'http://www.w3.org/2000/svg'

const $ = (id) => document.getElementById(id)

/** The operator key, or null. */
let key = null
/** Bumped whenever the key changes: an answer to an older key is dropped. */
let generation = 0
let timer = null
let running = false
let again = false
let lastOk = null
/** Table rows by provider, reused across refreshes so a button keeps its focus. */
const rows = new Map()

class Refused extends Error {}

function loadKey() {
  try {
    return sessionStorage.getItem(KEY_STORE)
  } catch {
    return null
  }
}

function storeKey(k) {
  try {
    if (k === null) sessionStorage.removeItem(KEY_STORE)
    else sessionStorage.setItem(KEY_STORE, k)
  } catch {
    // Storage disabled: the key stays in this page's memory only.
  }
}

async function api(k, path, init = {}) {
  const res = await fetch(path, {
    ...init,
    headers: { ...init.headers, authorization: `Bearer ${k}` },
    cache: 'no-store',
    credentials: 'omit',
    referrerPolicy: 'no-referrer',
  })
  if (res.status === 401) throw new Refused('refused')
  if (!res.ok) {
    let code = ''
    try {
      code = (await res.json()).error.code
    } catch {
      // Not our error envelope (a proxy's page, say).
    }
    throw new Error(code ? `${res.status} ${code}` : `HTTP ${res.status}`)
  }
  return res.json()
}

// --- key handling -------------------------------------------------------------------------

function setKey(k, message) {
  key = k
  storeKey(k)
  generation++
  clearTimeout(timer)
  timer = null
  clearView()
  notice('')
  $('forget').disabled = k === null
  authStatus(message, k === null ? '' : 'pending')
  if (k !== null) void tick()
}

function refuse() {
  setKey(null, 'The coordinator refused this operator key (401). Nothing of the pool is shown.')
  $('auth-status').className = 'error'
}

// --- polling ------------------------------------------------------------------------------

async function tick() {
  clearTimeout(timer)
  timer = null
  if (running) {
    again = true
    return
  }
  if (key === null) return
  running = true
  const gen = generation
  const k = key
  try {
    const [poolz, stats] = await Promise.all([api(k, '/poolz'), api(k, '/admin/stats')])
    if (gen === generation) {
      render(poolz, stats)
      lastOk = new Date()
      authStatus('Key accepted. It is kept in this tab only; "Forget key" removes it.', 'ok')
      $('updated').textContent = `Updated ${time(lastOk)} · refreshes every ${POLL_MS / 1000} s`
      $('updated').className = 'muted'
    }
  } catch (err) {
    if (gen === generation) {
      if (err instanceof Refused) refuse()
      else {
        $('updated').textContent = `Coordinator not answering (${err.message}); retrying.${lastOk ? ` Last update ${time(lastOk)}.` : ''}`
        $('updated').className = 'error'
      }
    }
  } finally {
    running = false
  }
  if (key === null) return
  if (again || gen !== generation) {
    again = false
    return tick()
  }
  timer = setTimeout(tick, POLL_MS)
}

// --- rendering ----------------------------------------------------------------------------

function clearView() {
  $('pool-view').hidden = true
  $('pool-rows').replaceChildren()
  rows.clear()
  for (const id of ['sum-total', 'sum-routable', 'sum-slots-in-flight', 'sum-slots-total', 'sum-slots-free', 'sum-slots-effective', 'stats-text']) {
    $(id).textContent = ''
  }
  $('sum-auth').replaceChildren()
  $('sum-models').replaceChildren()
  $('chart').replaceChildren()
  $('updated').textContent = ''
  lastOk = null
}

function render(poolz, stats) {
  renderSummary(poolz.summary)
  renderRows(poolz.pool)
  renderChart(stats)
  $('pool-view').hidden = false
}

function renderSummary(s) {
  $('sum-total').textContent = String(s.total)
  $('sum-routable').textContent = String(s.routable)
  const auth = []
  for (const state of new Set([...AUTH_STATES, ...Object.keys(s.by_auth_state)])) {
    auth.push(pair(state.replaceAll('_', ' '), String(s.by_auth_state[state] ?? 0), { 'data-auth-state': state }))
  }
  $('sum-auth').replaceChildren(...auth.flat())
  $('sum-slots-in-flight').textContent = String(s.slots.in_flight)
  $('sum-slots-total').textContent = String(s.slots.total)
  $('sum-slots-free').textContent = String(s.slots.free)
  $('sum-slots-effective').textContent = String(s.slots.effective_free)
  const models = s.models.map((m) => pair(m.id, `${m.routable} / ${m.providers} routable`, { 'data-model': m.id }))
  $('sum-models').replaceChildren(...(models.length > 0 ? models.flat() : [el('dd', 'muted', 'none')]))
}

function pair(term, value, attrs) {
  const dt = el('dt', '', term)
  const dd = el('dd', '', value)
  for (const [k, v] of Object.entries(attrs)) dd.setAttribute(k, v)
  return [dt, dd]
}

const CELLS = ['provider', 'node', 'auth', 'routable', 'status', 'slots', 'models', 'cooldown', 'strikes', 'connected', 'actions']

function renderRows(pool) {
  const seen = new Set()
  const tbody = $('pool-rows')
  for (const row of pool) {
    const node = typeof row.node_id === 'string' && row.node_id !== '' ? row.node_id : 'local'
    const id = `${node}\u0000${row.provider_id}`
    seen.add(id)
    let entry = rows.get(id)
    if (entry === undefined) {
      entry = makeRow(row.provider_id)
      rows.set(id, entry)
    }
    entry.row = row
    updateRow(entry, row, node)
    tbody.appendChild(entry.tr) // also puts the rows in the API's order
  }
  for (const [id, entry] of rows) {
    if (!seen.has(id)) {
      entry.tr.remove()
      rows.delete(id)
    }
  }
  $('empty').hidden = pool.length > 0
}

function makeRow(providerId) {
  const tr = document.createElement('tr')
  tr.setAttribute('data-provider-id', providerId)
  const cells = {}
  for (const name of CELLS) {
    const td = document.createElement('td')
    td.className = `c-${name}`
    cells[name] = td
    tr.appendChild(td)
  }
  const button = el('button', 'cordon', '')
  button.type = 'button'
  cells.actions.appendChild(button)
  const entry = { tr, cells, button, row: null }
  button.addEventListener('click', () => void toggleCordon(entry))
  return entry
}

function updateRow(entry, row, node) {
  const { tr, cells, button } = entry
  tr.className = row.routing_eligible ? '' : row.cordoned ? 'is-cordoned' : 'is-unroutable'
  cells.provider.replaceChildren(el('strong', '', row.provider_id), el('div', 'muted small', `${row.hostname} · ${row.binary_version}`))
  cells.node.textContent = node
  cells.auth.replaceChildren(badge(row.auth_state.replaceAll('_', ' '), row.auth_state === 'bearerless_duplicate' ? 'bad' : 'neutral'))
  // Identity v2: the pinned key's fingerprint and generation, never the key.
  const id = row.identity
  if (id?.pinned) cells.auth.append(el('div', 'muted small', `key ${id.key_fingerprint} · gen ${id.generation}`))
  if (row.routing_eligible) cells.routable.replaceChildren(badge('yes', 'ok'))
  else {
    const reason = row.routing_ineligible_reason ?? 'unknown'
    cells.routable.replaceChildren(badge(reason.replaceAll('_', ' '), reason === 'cordoned' || reason === 'quarantined_duplicate' ? 'bad' : 'warn'))
  }
  cells.routable.setAttribute('data-reason', row.routing_eligible ? '' : (row.routing_ineligible_reason ?? ''))
  cells.status.replaceChildren(el('span', `status-${row.status}`, row.status))
  if (row.cordoned) cells.status.append(' ', badge('cordoned', 'bad'))
  const meter = document.createElement('meter')
  meter.min = 0
  meter.max = Math.max(1, row.max_concurrency)
  meter.value = row.in_flight
  cells.slots.replaceChildren(el('span', 'num', `${row.in_flight} / ${row.max_concurrency}`), meter)
  cells.slots.title = `provider reports ${row.slots_free} of ${row.slots_total} free; ${row.effective_free_slots} usable`
  cells.models.replaceChildren(...row.models.map((m) => el('span', 'model', m)))
  updateCooldown(cells.cooldown, row)
  updateStrikes(cells.strikes, row)
  const since = new Date(row.connected_at)
  cells.connected.textContent = ago(since)
  cells.connected.title = since.toLocaleString()
  button.textContent = row.cordoned ? 'Uncordon' : 'Cordon…'
  button.setAttribute('data-action', row.cordoned ? 'uncordon' : 'cordon')
  button.setAttribute('aria-label', `${row.cordoned ? 'Uncordon' : 'Cordon'} ${row.provider_id}`)
}

// The coordinator decides whether a provider is cooling down (its clock, and the ejection cap):
// the page shows its verdict rather than comparing cooldown_until with this browser's clock.
function updateCooldown(cell, row) {
  const failures = row.consecutive_failures
  const parts = []
  if (row.cooling_down || row.cooldown_capped) {
    parts.push(badge(row.cooling_down ? 'cooling' : 'capped', row.cooling_down ? 'warn' : 'neutral'))
    parts.push(el('span', '', ` until ${time(new Date(row.cooldown_until))}`))
  }
  if (failures > 0) {
    const reason = (row.last_failure_reason ?? 'unknown').replaceAll('_', ' ')
    parts.push(el('div', 'muted small', `${failures} failure${failures === 1 ? '' : 's'} · last: ${reason}`))
  }
  cell.replaceChildren(...(parts.length > 0 ? parts : ['—']))
  cell.title = !row.cooldown_capped
    ? ''
    : row.cooling_down
      ? 'ranked last for some of its models; the ejection cap releases it for the others'
      : 'in cooldown, but the ejection cap lets it take its share of the traffic'
  cell.setAttribute('data-state', row.cooling_down ? 'cooling' : row.cooldown_capped ? 'capped' : '')
  cell.setAttribute('data-until', row.cooldown_until ?? '')
}

function updateStrikes(cell, row) {
  const n = row.strikes
  cell.replaceChildren(
    ...(n > 0 ? [el('span', 'num warn-text', String(n)), el('div', 'muted small', (row.last_strike_reason ?? 'unknown').replaceAll('_', ' '))] : ['—']),
  )
  cell.title = n > 0 ? `${n} strike${n === 1 ? '' : 's'} in the last hour` : ''
  cell.setAttribute('data-strikes', String(n))
}

function renderChart(stats) {
  const buckets = stats.buckets
  const n = buckets.length
  const step = 8
  const h = 64
  const max = Math.max(1, ...buckets.map((b) => b.requests))
  const svg = document.createElementNS(SVG_NS, 'svg')
  svg.setAttribute('viewBox', `0 0 ${n * step} ${h}`)
  svg.setAttribute('preserveAspectRatio', 'none')
  svg.setAttribute('role', 'img')
  let requests = 0
  let errors = 0
  let lastMinute = 0
  const perMinute = Math.round(60 / stats.bucket_s)
  buckets.forEach((b, i) => {
    requests += b.requests
    errors += b.errors
    if (i >= n - perMinute) lastMinute += b.requests
    const g = document.createElementNS(SVG_NS, 'g')
    const title = document.createElementNS(SVG_NS, 'title')
    title.textContent = `${time(new Date(b.start))}: ${b.requests} request${b.requests === 1 ? '' : 's'}, ${b.errors} error${b.errors === 1 ? '' : 's'}`
    g.appendChild(title)
    g.appendChild(bar(i * step + 1, step - 2, (b.requests / max) * (h - 2), h, 'bar-req', b.requests))
    if (b.errors > 0) g.appendChild(bar(i * step + 1, step - 2, (b.errors / max) * (h - 2), h, 'bar-err', b.errors))
    svg.appendChild(g)
  })
  const base = document.createElementNS(SVG_NS, 'line')
  for (const [a, v] of [
    ['x1', 0],
    ['x2', n * step],
    ['y1', h - 0.5],
    ['y2', h - 0.5],
  ])
    base.setAttribute(a, String(v))
  base.setAttribute('class', 'baseline')
  svg.appendChild(base)
  svg.setAttribute('aria-label', `${requests} requests and ${errors} errors in the last ${Math.round((n * stats.bucket_s) / 60)} minutes`)
  const axis = el('div', 'axis muted small', '')
  axis.append(el('span', '', `−${Math.round((n * stats.bucket_s) / 60)} min`), el('span', '', `peak ${max} per ${stats.bucket_s} s`), el('span', '', 'now'))
  $('chart').replaceChildren(svg, axis)
  const text = $('stats-text')
  text.textContent = `${requests} request${requests === 1 ? '' : 's'} · ${errors} error${errors === 1 ? '' : 's'} in the last ${Math.round((n * stats.bucket_s) / 60)} min · ${lastMinute} in the last minute`
  text.setAttribute('data-requests', String(requests))
  text.setAttribute('data-errors', String(errors))
}

function bar(x, width, height, h, cls, value) {
  const r = document.createElementNS(SVG_NS, 'rect')
  const hh = value > 0 ? Math.max(1.5, height) : 0
  r.setAttribute('x', String(x))
  r.setAttribute('width', String(width))
  r.setAttribute('y', String(h - 1 - hh))
  r.setAttribute('height', String(hh))
  r.setAttribute('class', cls)
  r.setAttribute('data-value', String(value))
  return r
}

// --- actions ------------------------------------------------------------------------------

async function toggleCordon(entry) {
  const row = entry.row
  if (key === null || row === null) return
  const action = row.cordoned ? 'uncordon' : 'cordon'
  let body
  if (action === 'cordon') {
    const reason = window.prompt(`Cordon ${row.provider_id}? It stays connected and gets no new requests until uncordoned.\n\nReason (optional):`, '')
    if (reason === null) return
    const clean = reason.replace(/[\u0000-\u001f\u007f]/g, ' ').trim()
    body = JSON.stringify(clean === '' ? {} : { reason: clean.slice(0, 200) })
  }
  entry.button.disabled = true
  const gen = generation
  try {
    const init = { method: 'POST' }
    if (body !== undefined) {
      init.headers = { 'content-type': 'application/json' }
      init.body = body
    }
    await api(key, `/admin/providers/${encodeURIComponent(row.provider_id)}/${action}`, init)
    notice('')
  } catch (err) {
    if (gen !== generation) return
    if (err instanceof Refused) return refuse()
    notice(`Could not ${action} ${row.provider_id}: ${err.message}`)
  } finally {
    entry.button.disabled = false
  }
  if (gen === generation) void tick()
}

// --- small helpers ------------------------------------------------------------------------

function el(tag, cls, text) {
  const e = document.createElement(tag)
  if (cls) e.className = cls
  if (text) e.textContent = text
  return e
}

function badge(text, kind) {
  return el('span', `badge ${kind}`, text)
}

function authStatus(text, cls) {
  const p = $('auth-status')
  p.textContent = text
  p.className = cls
}

function notice(text) {
  const p = $('notice')
  p.textContent = text
  p.hidden = text === ''
}

function time(d) {
  return d.toLocaleTimeString([], { hour12: false })
}

function ago(d) {
  const s = Math.max(0, Math.floor((Date.now() - d.getTime()) / 1000))
  if (s < 60) return `${s}s ago`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s ago`
  const h = Math.floor(m / 60)
  if (h < 48) return `${h}h ${String(m % 60).padStart(2, '0')}m ago`
  return `${Math.floor(h / 24)}d ${h % 24}h ago`
}

// --- start --------------------------------------------------------------------------------

$('key-form').addEventListener('submit', (e) => {
  e.preventDefault()
  const input = $('key')
  const k = input.value.trim()
  input.value = ''
  if (k === '') {
    authStatus('Enter the operator key to see the pool.', 'error')
    return
  }
  setKey(k, 'Checking the key…')
})

$('forget').addEventListener('click', () => setKey(null, 'Key forgotten. Enter the operator key to see the pool.'))

const saved = loadKey()
if (saved !== null && saved !== '') setKey(saved, 'Checking the key…')
