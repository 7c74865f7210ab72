/**
 * The operator dashboard in a real browser: Debian's chromium driven by playwright-core, against
 * a real coordinator, real providers and real buyer requests. Not part of `npm test` (a fresh
 * machine has no chromium): run it with `npm run test:browser`.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { keyFingerprint, type PoolzSummary } from '@poolcoord/protocol'
import { chromium, type BrowserContext, type Dialog, type Page } from 'playwright-core'
import t, { type Test } from 'tap'
import { apiError, buyer } from '../helpers/buyer.js'
import { generateIdentityKey, keyJoin } from '../helpers/key-client.js'
import { ManualClock } from '../../src/clock.js'
import { OPERATOR_KEY, startTestService, waitFor, type TestService } from '../helpers/service.js'
import { TestProvider, answer, type InferenceRequest } from '../helpers/test-provider.js'

const CHROMIUM = '/usr/bin/chromium'
const SCREENSHOT = fileURLToPath(new URL('../artifacts/dashboard.png', import.meta.url))
const SCREENSHOT_COOLDOWN = fileURLToPath(new URL('../artifacts/dashboard-cooldown.png', import.meta.url))
const STATIC = new URL('../../static/dashboard/', import.meta.url)
const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
const WRONG_KEY = 'wrong-operator-key-9999999999999999'
const messages = [{ role: 'user' as const, content: 'hi' }]
/** Provider-supplied strings that would run or render as markup if the page ever used innerHTML. */
const EVIL_HOSTNAME = '<img src=x onerror="window.__pwned=1">'
const EVIL_MODEL = '<script>window.__pwned=2</script>'

async function launch(t: Test): Promise<BrowserContext> {
  const profile = mkdtempSync(join(tmpdir(), 'poolcoord-dashboard-'))
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1440, height: 900 },
    colorScheme: 'light',
  })
  t.teardown(async () => {
    await context.close()
    rmSync(profile, { recursive: true, force: true })
  })
  // The functions below run in the page as this file was compiled: tsx (esbuild, keepNames) wraps
  // named inner functions in calls to its `__name` helper, which only exists in Node. An identity
  // stand-in, set through DevTools (the page's CSP does not apply), lets them run unchanged.
  await context.addInitScript({ content: 'globalThis.__name = (fn) => fn' })
  return context
}

// --- what the page shows, read in the page (these functions run in the browser) ------------

function readRows() {
  return Array.from(document.querySelectorAll('#pool-rows tr'), (tr) => {
    const cell = (name: string) => (tr.querySelector(`.c-${name}`)?.textContent ?? '').replace(/\s+/g, ' ').trim()
    return {
      id: tr.getAttribute('data-provider-id'),
      node: cell('node'),
      auth: cell('auth'),
      routable: cell('routable'),
      reason: tr.querySelector('.c-routable')?.getAttribute('data-reason') ?? null,
      status: cell('status'),
      slots: cell('slots'),
      models: Array.from(tr.querySelectorAll('.c-models .model'), (m) => m.textContent),
      cooldown: cell('cooldown'),
      strikes: cell('strikes'),
      action: tr.querySelector('.c-actions button')?.getAttribute('data-action') ?? null,
    }
  })
}

/** The cooldown and strike columns, by their parts. */
function readHealth() {
  return Array.from(document.querySelectorAll('#pool-rows tr'), (tr) => {
    const cooldown = tr.querySelector('.c-cooldown')
    const strikes = tr.querySelector('.c-strikes')
    return {
      id: tr.getAttribute('data-provider-id'),
      state: cooldown?.getAttribute('data-state') ?? null,
      badge: cooldown?.querySelector('.badge')?.textContent ?? null,
      until: cooldown?.getAttribute('data-until') ?? null,
      failures: cooldown?.querySelector('.muted')?.textContent ?? null,
      strikes: strikes?.getAttribute('data-strikes') ?? null,
      strikeReason: strikes?.querySelector('.muted')?.textContent ?? null,
    }
  })
}

function readSummary() {
  const text = (id: string) => document.getElementById(id)?.textContent ?? ''
  const dd = (selector: string, attr: string) =>
    Object.fromEntries(Array.from(document.querySelectorAll(selector), (e) => [e.getAttribute(attr), e.textContent]))
  return {
    total: text('sum-total'),
    routable: text('sum-routable'),
    by_auth_state: dd('#sum-auth dd', 'data-auth-state'),
    slots: {
      total: text('sum-slots-total'),
      free: text('sum-slots-free'),
      effective_free: text('sum-slots-effective'),
      in_flight: text('sum-slots-in-flight'),
    },
    models: dd('#sum-models dd[data-model]', 'data-model'),
  }
}

function readChart() {
  const sum = (selector: string) => Array.from(document.querySelectorAll(selector), (r) => Number(r.getAttribute('data-value'))).reduce((a, b) => a + b, 0)
  const text = document.getElementById('stats-text')
  return {
    requests: text?.getAttribute('data-requests') ?? null,
    errors: text?.getAttribute('data-errors') ?? null,
    requestBars: sum('#chart rect.bar-req'),
    errorBars: sum('#chart rect.bar-err'),
    buckets: document.querySelectorAll('#chart g').length,
  }
}

/** Everything of the pool the page could show: nothing of it may appear without an accepted key. */
function readPoolTraces() {
  return {
    rows: document.querySelectorAll('#pool-rows tr').length,
    viewHidden: (document.getElementById('pool-view') as HTMLElement).hidden,
    counts: ['sum-total', 'sum-routable', 'sum-slots-total', 'sum-slots-in-flight'].map((id) => document.getElementById(id)?.textContent ?? ''),
    auth: document.querySelectorAll('#sum-auth dd').length,
    models: document.querySelectorAll('#sum-models dd').length,
    bars: document.querySelectorAll('#chart rect').length,
  }
}

const NOTHING_SHOWN = { rows: 0, viewHidden: true, counts: ['', '', '', ''], auth: 0, models: 0, bars: 0 }

/**
 * Waits until `read()`, run in the page, equals `want`: it checks at once and again on every
 * change to the page (a MutationObserver), so it passes as soon as the dashboard's next refresh
 * (every 2 s) renders the state; after 10 s it fails showing what the page last had.
 *
 * Not page.waitForFunction: that evaluates its predicate from a string, which the dashboard's
 * CSP (no 'unsafe-eval') rightly refuses. page.evaluate runs a function over the DevTools
 * protocol, which the CSP does not govern, so the waiting is built from that.
 */
async function pageShows<T>(t: Test, page: Page, read: () => T, want: T, msg: string): Promise<void> {
  const waiter = new Function(
    'arg',
    `const read = ${read.toString()}
    return new Promise((resolve) => {
      let last
      const observer = new MutationObserver(() => check())
      const timer = setTimeout(() => finish(false), arg.timeoutMs)
      const finish = (ok) => {
        observer.disconnect()
        clearTimeout(timer)
        resolve({ ok, last })
      }
      const check = () => {
        last = read()
        if (JSON.stringify(last) === arg.want) finish(true)
      }
      observer.observe(document.documentElement, { subtree: true, childList: true, characterData: true, attributes: true })
      check()
    })`,
  ) as (arg: { want: string; timeoutMs: number }) => Promise<{ ok: boolean; last: T }>
  const { ok, last } = await page.evaluate(waiter, { want: JSON.stringify(want), timeoutMs: 10_000 })
  if (ok) t.pass(msg)
  else t.same(last, want, msg)
}

/** The summary as the page must show it: the server's numbers, as text. */
function summaryText(s: PoolzSummary): ReturnType<typeof readSummary> {
  return {
    total: String(s.total),
    routable: String(s.routable),
    by_auth_state: Object.fromEntries(Object.entries(s.by_auth_state).map(([k, v]) => [k, String(v)])),
    slots: { total: String(s.slots.total), free: String(s.slots.free), effective_free: String(s.slots.effective_free), in_flight: String(s.slots.in_flight) },
    models: Object.fromEntries(s.models.map((m) => [m.id, `${m.routable} / ${m.providers} routable`])),
  }
}

type RowView = ReturnType<typeof readRows>[number]
const row = (id: string, extra: Partial<RowView> = {}): RowView => ({
  id,
  node: 'local',
  auth: 'self minted',
  routable: 'yes',
  reason: '',
  status: 'ready',
  slots: '0 / 4',
  models: ['test-model'],
  cooldown: '—',
  strikes: '—',
  action: 'cordon',
  ...extra,
})

async function cordoned(s: TestService, id: string): Promise<boolean | undefined> {
  return (await s.poolz()).pool.find((r) => r.provider_id === id)?.cordoned
}

if (!existsSync(CHROMIUM)) {
  t.fail(
    `chromium not found at ${CHROMIUM}. The dashboard test drives Debian's chromium (Playwright's own browser downloads are not used): ` +
      'install it with `apt-get update && apt-get install -y chromium`, then run `npm run test:browser`.',
  )
} else {
  t.test('the operator dashboard: key handling, live pool, cordon and uncordon, request chart', async (t) => {
    const s = await startTestService(t)
    const alpha = await TestProvider.join(s.wsUrl, 'alpha', { handler: answer() })
    const beta = await TestProvider.join(s.wsUrl, 'beta', { handler: answer() })
    // gamma answers at once, or holds requests while `hold` is set, so a slot shows in use.
    let hold = false
    const held: InferenceRequest[] = []
    const gamma = await TestProvider.join(s.wsUrl, 'gamma', {
      handler: (req, p) => (hold ? void held.push(req) : answer()(req, p)),
    })
    await TestProvider.join(s.wsUrl, 'mallory', { handler: answer(), hello: { hostname: EVIL_HOSTNAME, supported_models: [EVIL_MODEL] } })

    // The static files: public, strict CSP, no inline script or style anywhere.
    const html = readFileSync(new URL('index.html', STATIC), 'utf8')
    t.notMatch(html, /<script(?![^>]*\ssrc=)[^>]*>/i, 'no inline script in index.html')
    t.notMatch(html, /\sstyle=|<style/i, 'no inline style in index.html')
    for (const [path, type] of [
      ['/dashboard/', 'text/html'],
      ['/dashboard/dashboard.js', 'text/javascript'],
      ['/dashboard/dashboard.css', 'text/css'],
    ] as const) {
      const res = await fetch(`${s.url}${path}`)
      t.equal(res.status, 200, path)
      t.match(res.headers.get('content-type'), type, `${path} content type`)
      t.equal(res.headers.get('content-security-policy'), CSP, `${path} CSP`)
      t.equal(res.headers.get('x-content-type-options'), 'nosniff')
      t.equal(res.headers.get('cache-control'), 'no-store')
    }
    t.equal((await fetch(`${s.url}/dashboard/other.js`)).status, 404, 'nothing else is served from there')
    t.equal((await fetch(`${s.url}/dashboard/dashboard.js`, { method: 'POST' })).status, 405)

    const context = await launch(t)
    const page = context.pages()[0] ?? (await context.newPage())
    const requests: Array<{ url: string; method: string; authorization: string | undefined }> = []
    page.on('request', (r) => requests.push({ url: r.url(), method: r.method(), authorization: r.headers().authorization }))
    const problems: string[] = []
    page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`))
    page.on('console', (m) => {
      // A 401 or 503 answer is logged by the browser itself; anything else (a CSP violation, a
      // script error) is a fault.
      if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(`console: ${m.text()}`)
    })
    // Each dialog is recorded and answered by the step that expects it; any other is dismissed.
    const dialogs: string[] = []
    let answerDialog: ((d: Dialog) => Promise<void>) | null = null
    page.on('dialog', (d) => {
      dialogs.push(d.type())
      const reply = answerDialog ?? ((d: Dialog) => d.dismiss())
      answerDialog = null
      void reply(d)
    })

    const res = await page.goto(`${s.url}/dashboard`)
    t.equal(res?.status(), 200)
    const headers = res?.headers() ?? {}
    t.equal(headers['content-security-policy'], CSP, 'the page is served with the strict CSP')
    t.equal(headers['referrer-policy'], 'no-referrer')
    t.equal(headers['x-content-type-options'], 'nosniff')

    // 1. No key: nothing of the pool, and no request for it.
    await page.locator('#auth-status', { hasText: 'Enter the operator key' }).waitFor()
    t.same(await page.evaluate(readPoolTraces), NOTHING_SHOWN, 'without a key nothing of the pool shows')
    t.equal(requests.filter((r) => r.url.includes('/poolz') || r.url.includes('/admin/')).length, 0, 'without a key the page asks for nothing')

    // 2. A wrong key: refused, said so, nothing shown, polling stopped.
    await page.locator('#key').fill(WRONG_KEY)
    await page.locator('#connect').click()
    await page.locator('#auth-status', { hasText: 'refused' }).waitFor()
    t.match(await page.locator('#auth-status').textContent(), /refused this operator key \(401\)/, 'the page says the key was refused')
    t.same(await page.evaluate(readPoolTraces), NOTHING_SHOWN, 'with a wrong key nothing of the pool shows')
    t.notOk((await page.locator('body').innerText()).includes('alpha'), 'no provider id on the page')
    t.equal(await page.locator('#key').inputValue(), '', 'the key does not stay in the input')
    t.equal(await page.evaluate(() => sessionStorage.length), 0, 'a refused key is not kept')

    // 3. The right key: a row per connected provider, every field as /poolz has it.
    await page.locator('#key').fill(OPERATOR_KEY)
    await page.locator('#key').press('Enter')
    await page.locator('#auth-status', { hasText: 'Key accepted' }).waitFor()
    const initial = [row('alpha'), row('beta'), row('gamma'), row('mallory', { models: ['test-model', EVIL_MODEL] })]
    await pageShows(t, page, readRows, initial, 'a row for each connected provider')
    await pageShows(t, page, readSummary, summaryText((await s.poolz()).summary), 'the summary counts match /poolz')
    t.equal(
      await page.locator('tr[data-provider-id="mallory"] .c-provider .muted').textContent(),
      `${EVIL_HOSTNAME} · 1.0.0`,
      'an untrusted hostname shows as text',
    )
    t.equal(await page.locator('#pool-rows img, #pool-rows script, #summary script').count(), 0, 'and never as markup')
    t.equal(await page.evaluate(() => (window as { __pwned?: number }).__pwned), undefined, 'and never runs')
    t.equal(await page.evaluate(() => sessionStorage.length), 1, 'the key is held by this tab (sessionStorage)')
    t.equal(await page.evaluate(() => localStorage.length), 0, 'and not in localStorage')
    t.same(await context.cookies(), [], 'nor in a cookie')

    // A reload of the tab keeps the key (sessionStorage) and the view.
    await page.reload()
    await pageShows(t, page, readRows, initial, 'the tab keeps its key across a reload')

    // 4. A provider's own state change: beta says it is draining, so it is not routable.
    beta.heartbeat('draining')
    const betaDraining = row('beta', { routable: 'not ready', reason: 'not_ready', status: 'draining' })
    await pageShows(t, page, readRows, [row('alpha'), betaDraining, row('gamma'), initial[3] as RowView], 'beta shows draining, not routable, and why')

    // 5. Cordon from the page: a prompt for the reason, then the coordinator has it.
    answerDialog = async (d) => {
      t.equal(d.type(), 'prompt', 'cordon asks for a reason')
      await d.accept('flaky answers')
    }
    await page.getByRole('button', { name: 'Cordon alpha', exact: true }).click()
    await waitFor(async () => (await cordoned(s, 'alpha')) === true, 'alpha cordoned on the coordinator', 10_000)
    t.match(
      (await s.poolz()).pool.find((r) => r.provider_id === 'alpha'),
      { cordoned: true, routing_eligible: false, routing_ineligible_reason: 'cordoned' },
    )
    const list = await fetch(`${s.url}/admin/cordons`, { headers: { authorization: `Bearer ${OPERATOR_KEY}` } })
    t.match(await list.json(), { cordons: [{ provider_id: 'alpha', reason: 'flaky answers' }] }, 'with the reason typed in the prompt')
    const alphaCordoned = row('alpha', { routable: 'cordoned', reason: 'cordoned', status: 'ready cordoned', action: 'uncordon' })
    await pageShows(t, page, readRows, [alphaCordoned, betaDraining, row('gamma'), initial[3] as RowView], 'the page shows alpha cordoned')
    await pageShows(t, page, readSummary, summaryText((await s.poolz()).summary), 'the summary follows: 2 routable')

    // 6. Buyer requests: 5 served, 1 refused (pinned to the cordoned alpha), then 1 held at gamma.
    for (let i = 0; i < 5; i++) await buyer(s.url).chat.completions.create({ model: 'test-model', messages })
    t.equal(alpha.requests.length, 0, 'the cordoned provider got none')
    const refused = await apiError(buyer(s.url).chat.completions.create({ model: 'test-model', messages }, { headers: { 'x-pool-provider': 'alpha' } }))
    t.equal(refused.status, 503)
    hold = true
    const pending = buyer(s.url).chat.completions.create({ model: 'test-model', messages }, { headers: { 'x-pool-provider': 'gamma' } })
    await waitFor(() => held.length === 1, 'the held request at gamma')
    await pageShows(
      t,
      page,
      readChart,
      { requests: '6', errors: '1', requestBars: 6, errorBars: 1, buckets: 90 },
      'the chart shows the 6 requests and the error',
    )
    const gammaBusy = row('gamma', { slots: '1 / 4' })
    await pageShows(t, page, readRows, [alphaCordoned, betaDraining, gammaBusy, initial[3] as RowView], 'gamma shows a slot in use')
    await pageShows(t, page, readSummary, summaryText((await s.poolz()).summary), 'the summary counts the slot in use')
    await page.locator('#sum-slots-in-flight', { hasText: '1' }).waitFor()
    mkdirSync(dirname(SCREENSHOT), { recursive: true })
    await page.screenshot({ path: SCREENSHOT, fullPage: true })
    t.ok(existsSync(SCREENSHOT), `screenshot at ${SCREENSHOT}`)

    answer()(held[0] as InferenceRequest, gamma)
    hold = false
    await pending
    await pageShows(t, page, readChart, { requests: '7', errors: '1', requestBars: 7, errorBars: 1, buckets: 90 }, 'the finished request is counted')
    const stats = (await (await fetch(`${s.url}/admin/stats`, { headers: { authorization: `Bearer ${OPERATOR_KEY}` } })).json()) as {
      buckets: Array<{ requests: number; errors: number }>
    }
    t.same(
      stats.buckets.reduce((a, b) => [a[0] + b.requests, a[1] + b.errors], [0, 0]),
      [7, 1],
      'as /admin/stats has it',
    )

    // 7. A cordon prompt cancelled does nothing; uncordon from the page needs no prompt.
    const dialogsBefore = dialogs.length
    await page.getByRole('button', { name: 'Cordon gamma', exact: true }).click()
    t.equal(dialogs.length, dialogsBefore + 1, 'the prompt was shown, and dismissed')
    await page.getByRole('button', { name: 'Uncordon alpha', exact: true }).click()
    await waitFor(async () => (await cordoned(s, 'alpha')) === false, 'alpha uncordoned on the coordinator', 10_000)
    t.equal(dialogs.length, dialogsBefore + 1, 'uncordon asks nothing')
    t.notOk(
      requests.some((r) => r.method === 'POST' && r.url.endsWith('/admin/providers/gamma/cordon')),
      'a dismissed prompt sends nothing',
    )
    t.equal(await cordoned(s, 'gamma'), false)
    await pageShows(t, page, readRows, [row('alpha'), betaDraining, row('gamma'), initial[3] as RowView], 'the page shows alpha routable again')

    // 8. A provider that leaves disappears; the counts follow.
    await gamma.close()
    await waitFor(() => s.svc.ctx.registry.get('gamma') === undefined, 'gamma gone')
    await pageShows(t, page, readRows, [row('alpha'), betaDraining, initial[3] as RowView], 'the disconnected provider is gone')
    await pageShows(t, page, readSummary, summaryText((await s.poolz()).summary), 'the summary counts match /poolz after the disconnect')

    // 8b. Identity v2: a key-proven provider shows its key's fingerprint and generation, never the key.
    // (The badge and the line below it are two elements: textContent joins them without a space.)
    const key = generateIdentityKey()
    const keyed = await keyJoin(s.wsUrl, 'keyed', key, { intent: 'enroll' })
    t.equal(keyed.ack?.auth_state, 'key_proven')
    const keyedRow = row('keyed', { auth: `key provenkey ${keyFingerprint(key.publicKey)} · gen 1`, slots: '0 / 2', models: ['llama-3-8b'] })
    await pageShows(t, page, readRows, [row('alpha'), betaDraining, keyedRow, initial[3] as RowView], 'a key-proven row shows its fingerprint')
    t.notOk((await page.content()).includes(key.publicKey), 'the page never shows the key itself')
    await keyed.client.close()
    await waitFor(() => s.svc.ctx.registry.get('keyed') === undefined, 'keyed gone')

    // 9. Forget key: everything of the pool goes, the key too.
    await page.locator('#forget').click()
    await page.locator('#auth-status', { hasText: 'forgotten' }).waitFor()
    t.same(await page.evaluate(readPoolTraces), NOTHING_SHOWN, 'after "forget key" nothing of the pool shows')
    t.equal(await page.evaluate(() => sessionStorage.length), 0, 'and the key is gone from the tab')

    // The key's paths: only in the Authorization header, only to this coordinator.
    for (const r of requests) {
      t.notOk(r.url.includes(OPERATOR_KEY) || r.url.includes(WRONG_KEY), `no key in ${r.url}`)
      if (r.authorization !== undefined) t.ok(r.url.startsWith(`${s.url}/`), `the key goes to the coordinator only (${r.url})`)
    }
    const withWrongKey = requests.filter((r) => r.authorization === `Bearer ${WRONG_KEY}`).map((r) => new URL(r.url).pathname)
    t.same(withWrongKey.sort(), ['/admin/stats', '/poolz'], 'after the 401 the page stopped asking')
    t.same(problems, [], 'no script error and no CSP violation')
  })

  t.test('the dashboard shows why a provider cools down, whether the ejection cap holds it back, and its strikes', async (t) => {
    const clock = new ManualClock()
    const s = await startTestService(t, { clock })
    // strong fails first and is sidelined; weak fails after it, when the 50% cap is reached.
    const strong = await TestProvider.join(s.wsUrl, 'strong', { hello: { max_concurrency: 8 } })
    strong.serve((req, p) => p.end(req.request_id, 'error_internal'))
    await apiError(buyer(s.url).chat.completions.create({ model: 'test-model', messages }))
    const weak = await TestProvider.join(s.wsUrl, 'weak', { hello: { max_concurrency: 2 } })
    weak.serve((req, p) => p.end(req.request_id, 'error_internal'))
    clock.advance(1)
    await apiError(buyer(s.url).chat.completions.create({ model: 'test-model', messages }))
    // As the connection shell does when it closes a provider for an abusive frame.
    s.svc.ctx.strikes.charge('strong', 'invalid_frame', clock.now())
    await TestProvider.join(s.wsUrl, 'calm', { handler: answer() })
    const rows = (await s.poolz()).pool
    const until = (id: string) => rows.find((r) => r.provider_id === id)?.cooldown_until ?? null
    t.match(
      rows.find((r) => r.provider_id === 'strong'),
      { cooling_down: true, strikes: 1, last_failure_reason: 'provider_internal' },
    )

    const context = await launch(t)
    const page = context.pages()[0] ?? (await context.newPage())
    const problems: string[] = []
    page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`))
    await page.goto(`${s.url}/dashboard`)
    await page.locator('#key').fill(OPERATOR_KEY)
    await page.locator('#key').press('Enter')
    await page.locator('#auth-status', { hasText: 'Key accepted' }).waitFor()
    const healthy = (id: string) => ({ id, state: '', badge: null, until: '', failures: null, strikes: '0', strikeReason: null })
    await pageShows(
      t,
      page,
      readHealth,
      [
        healthy('calm'),
        {
          id: 'strong',
          state: 'cooling',
          badge: 'cooling',
          until: until('strong'),
          failures: '1 failure · last: provider internal',
          strikes: '1',
          strikeReason: 'invalid frame',
        },
        {
          id: 'weak',
          state: 'capped',
          badge: 'capped',
          until: until('weak'),
          failures: '1 failure · last: provider internal',
          strikes: '0',
          strikeReason: null,
        },
      ],
      'strong cooling with its reason and strike; weak held back by nothing, the cap reached',
    )
    t.match(await page.locator('tr[data-provider-id="strong"] .c-cooldown').textContent(), /until \d\d:\d\d:\d\d/, 'with the time the cooldown ends')
    mkdirSync(dirname(SCREENSHOT_COOLDOWN), { recursive: true })
    await page.screenshot({ path: SCREENSHOT_COOLDOWN, fullPage: true })

    // The cooldowns pass (the coordinator's clock): the page follows the coordinator, not its own clock.
    clock.advance(1000)
    await pageShows(
      t,
      page,
      readHealth,
      [
        healthy('calm'),
        {
          id: 'strong',
          state: '',
          badge: null,
          until: until('strong'),
          failures: '1 failure · last: provider internal',
          strikes: '1',
          strikeReason: 'invalid frame',
        },
        { id: 'weak', state: '', badge: null, until: until('weak'), failures: '1 failure · last: provider internal', strikes: '0', strikeReason: null },
      ],
      'no longer cooling; the failure run stays until a complete answer',
    )
    t.same(problems, [], 'no script error')
  })
}
