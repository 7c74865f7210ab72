import t from 'tap'
import { LiveConfig, checkOperatorKey, defaultLimits, envToConfig, nodeTiming, readEnv, type Env } from '../../src/config.js'
import { ConfigError } from '../../src/errors.js'

/** Runs fn and returns the error it threw, or null. */
function thrown(fn: () => unknown): unknown {
  try {
    fn()
    return null
  } catch (err) {
    return err
  }
}

const GOOD_KEY = 'k'.repeat(16)

t.test('defaults', async (t) => {
  const c = envToConfig({})
  t.equal(c.host, '127.0.0.1')
  t.equal(c.port, 8080)
  t.equal(c.databaseUrl, null)
  t.equal(c.dataDir, './data')
  t.equal(c.operatorKey, null)
  t.equal(c.trustProxy, false)
  t.equal(c.logLevel, 'info')
  t.strictSame(c.live, { requireProviderTokens: false, logLevel: 'info' })
  t.equal(c.configFile, null)
  t.strictSame(c.envLive, {})
  t.strictSame(c.limits, defaultLimits)
  t.equal(c.cluster, null, 'single-node mode unless COORD_NATS_URL is set')
})

t.test('blank values fall back to defaults', async (t) => {
  const c = envToConfig({ host: '  ', port: '', databaseUrl: '', dataDir: ' ', requireProviderTokens: '', trustProxy: '' })
  t.equal(c.host, '127.0.0.1')
  t.equal(c.port, 8080)
  t.equal(c.databaseUrl, null)
  t.equal(c.dataDir, './data')
  t.equal(c.live.requireProviderTokens, false)
  t.equal(c.trustProxy, false)
})

t.test('explicit values are used', async (t) => {
  const c = envToConfig({
    host: '0.0.0.0',
    port: '9000',
    databaseUrl: 'postgres://u@h/db',
    dataDir: '/var/lib/poolcoord',
    operatorKey: GOOD_KEY,
    requireProviderTokens: 'true',
    trustProxy: 'yes',
    logLevel: 'debug',
  })
  t.equal(c.host, '0.0.0.0')
  t.equal(c.port, 9000)
  t.equal(c.databaseUrl, 'postgres://u@h/db')
  t.equal(c.dataDir, '/var/lib/poolcoord')
  t.equal(c.operatorKey, GOOD_KEY)
  t.equal(c.live.requireProviderTokens, true)
  t.equal(c.trustProxy, true)
  t.equal(c.logLevel, 'debug')
})

t.test('COORD_PORT', async (t) => {
  const valid: { raw: string; port: number }[] = [
    { raw: '0', port: 0 },
    { raw: '1', port: 1 },
    { raw: '80', port: 80 },
    { raw: '65535', port: 65535 },
  ]
  for (const v of valid) t.equal(envToConfig({ port: v.raw }).port, v.port, `port ${v.raw}`)
  const invalid = ['65536', '99999', '123456', '-1', 'abc', '80.5', ' 80', '80 ', '1e3', '0x50', '+80', '８０']
  for (const raw of invalid) {
    const err = thrown(() => envToConfig({ port: raw }))
    t.ok(err instanceof ConfigError, `port ${JSON.stringify(raw)} throws ConfigError`)
    t.match(err, { code: 'COORD_CONFIG_INVALID', message: /COORD_PORT/ }, `port ${JSON.stringify(raw)} names the variable`)
  }
})

t.test('booleans', async (t) => {
  const cases: { raw: string; value: boolean | 'throw' }[] = [
    { raw: 'true', value: true },
    { raw: 'TRUE', value: true },
    { raw: 'True', value: true },
    { raw: '1', value: true },
    { raw: 'yes', value: true },
    { raw: 'YES', value: true },
    { raw: 'false', value: false },
    { raw: 'FALSE', value: false },
    { raw: '0', value: false },
    { raw: 'no', value: false },
    { raw: 'on', value: 'throw' },
    { raw: 'off', value: 'throw' },
    { raw: 'y', value: 'throw' },
    { raw: 'n', value: 'throw' },
    { raw: '2', value: 'throw' },
    { raw: ' true', value: 'throw' },
    { raw: 'truee', value: 'throw' },
  ]
  const fields: { key: 'requireProviderTokens' | 'trustProxy'; name: string; read: (e: Env) => boolean }[] = [
    { key: 'requireProviderTokens', name: 'COORD_REQUIRE_PROVIDER_TOKENS', read: (e) => envToConfig(e).live.requireProviderTokens },
    { key: 'trustProxy', name: 'COORD_TRUST_PROXY', read: (e) => envToConfig(e).trustProxy },
  ]
  for (const f of fields) {
    for (const c of cases) {
      const env: Env = { [f.key]: c.raw }
      if (c.value === 'throw') {
        const err = thrown(() => f.read(env))
        t.ok(err instanceof ConfigError, `${f.name}=${JSON.stringify(c.raw)} throws ConfigError`)
        t.match(err, { message: new RegExp(f.name) }, `${f.name}=${JSON.stringify(c.raw)} names the variable`)
      } else {
        t.equal(f.read(env), c.value, `${f.name}=${JSON.stringify(c.raw)}`)
      }
    }
  }
})

t.test('operator key', async (t) => {
  const cases: { name: string; key: string; ok: boolean }[] = [
    { name: 'empty string', key: '', ok: false },
    { name: 'one space', key: ' ', ok: false },
    { name: 'whitespace only (16+)', key: ' '.repeat(20), ok: false },
    { name: 'tabs and newlines only', key: '\t\n\t\n\t\n\t\n\t\n\t\n\t\n\t\n', ok: false },
    { name: '15 chars', key: 'k'.repeat(15), ok: false },
    { name: '15 chars padded to 17 with spaces', key: ` ${'k'.repeat(15)} `, ok: false },
    { name: '16 chars with an inner space', key: `${'k'.repeat(8)} ${'k'.repeat(8)}`, ok: false },
    { name: '16 chars with a leading tab', key: `\t${'k'.repeat(16)}`, ok: false },
    { name: '16 chars with a trailing newline', key: `${'k'.repeat(16)}\n`, ok: false },
    { name: 'exactly 16 chars', key: GOOD_KEY, ok: true },
    { name: '64 mixed chars', key: 'aB3-_.~!'.repeat(8), ok: true },
  ]
  for (const c of cases) {
    const err = thrown(() => envToConfig({ operatorKey: c.key }))
    if (c.ok) {
      t.equal(err, null, `${c.name}: accepted`)
      t.equal(envToConfig({ operatorKey: c.key }).operatorKey, c.key, `${c.name}: kept verbatim`)
    } else {
      t.ok(err instanceof ConfigError, `${c.name}: envToConfig throws ConfigError`)
      t.match(err, { message: /COORD_OPERATOR_KEY/ }, `${c.name}: names the variable`)
      t.ok(thrown(() => checkOperatorKey(c.key, 'src')) instanceof ConfigError, `${c.name}: checkOperatorKey throws`)
    }
  }
  t.equal(envToConfig({}).operatorKey, null, 'absent key means null (load or generate)')
  t.match(
    thrown(() => checkOperatorKey('short', 'the key file')),
    { message: /^the key file / },
    'message names the source',
  )
})

t.test('log level', async (t) => {
  for (const level of ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']) {
    t.equal(envToConfig({ logLevel: level }).logLevel, level, level)
  }
  for (const level of ['verbose', 'INFO', '']) {
    t.ok(thrown(() => envToConfig({ logLevel: level })) instanceof ConfigError, `${JSON.stringify(level)} rejected`)
  }
})

t.test('limits overrides merge over the defaults', async (t) => {
  const c = envToConfig({}, { idleTimeoutMs: 500, maxSessions: 3 })
  t.equal(c.limits.idleTimeoutMs, 500)
  t.equal(c.limits.maxSessions, 3)
  t.equal(c.limits.helloTimeoutMs, defaultLimits.helloTimeoutMs)
  t.equal(defaultLimits.idleTimeoutMs, 90_000, 'defaults are not mutated by an override')
})

t.test('LiveConfig get/set', async (t) => {
  const live = new LiveConfig({ requireProviderTokens: false, logLevel: 'info' })
  t.strictSame(live.get(), { requireProviderTokens: false, logLevel: 'info' })
  const next = { requireProviderTokens: true, logLevel: 'info' }
  live.set(next)
  t.strictSame(live.get(), { requireProviderTokens: true, logLevel: 'info' })
  next.requireProviderTokens = false
  t.equal(live.get().requireProviderTokens, true, 'set copies: later changes to the argument do not leak in')
  t.ok(Object.isFrozen(live.get()), 'the stored settings are frozen')
  live.set({ requireProviderTokens: false, logLevel: 'debug' })
  t.equal(live.get().requireProviderTokens, false, 'a second set takes effect')
})

t.test('readEnv maps the environment names', async (t) => {
  const env = {
    COORD_HOST: 'h',
    COORD_PORT: '1234',
    DATABASE_URL: 'postgres://x',
    COORD_DATA_DIR: '/d',
    COORD_OPERATOR_KEY: GOOD_KEY,
    COORD_REQUIRE_PROVIDER_TOKENS: 'yes',
    COORD_TRUST_PROXY: '0',
    COORD_LOG_LEVEL: 'warn',
    COORD_LOG_FORMAT: 'json',
    COORD_METRICS_REQUIRE_KEY: 'true',
    COORD_MAX_BODY_BYTES: '2048',
    COORD_REQUEST_TIMEOUT_S: '120',
    COORD_FIRST_CHUNK_TIMEOUT_S: '15',
    COORD_CONFIG: '/etc/poolcoord/live.yaml',
    COORD_DRAIN_TIMEOUT_S: '45',
    COORD_MAX_EJECTION_PERCENT: '40',
    COORD_NATS_URL: 'nats://127.0.0.1:4222',
    COORD_NODE_ID: 'coord-a',
    COORD_NODE_TTL_MS: '4000',
    COORD_PUBLIC_ORIGIN: 'wss://pool.example.com',
    COORD_TOKEN_TTL: '14d',
    COORD_TOKEN_GRACE: '5m',
    COORD_MINT_RATE_ADDRESS: '20/h',
    COORD_MINT_RATE_PREFIX: '50/h',
    COORD_MINT_RATE_GLOBAL: 'off',
    COORD_RECOVERY_RATE: '3/h',
    COORD_MINT_RATE_NEWCOMER: '10/h',
    COORD_HEAL_RATE: '60/h',
    COORD_ADMISSION_DEADLINE_S: '15',
    COORD_MAX_PENDING: '512',
    COORD_MAX_PENDING_PER_ADDRESS: '4',
    COORD_MAX_SESSIONS_PER_ADDRESS: '100',
    COORD_MAX_UNPROVEN_PER_ADDRESS: '8',
    UNRELATED: 'ignored',
  }
  const expected: Env = {
    host: 'h',
    port: '1234',
    databaseUrl: 'postgres://x',
    dataDir: '/d',
    operatorKey: GOOD_KEY,
    requireProviderTokens: 'yes',
    trustProxy: '0',
    logLevel: 'warn',
    logFormat: 'json',
    metricsRequireKey: 'true',
    maxBodyBytes: '2048',
    requestTimeoutS: '120',
    firstChunkTimeoutS: '15',
    configFile: '/etc/poolcoord/live.yaml',
    drainTimeoutS: '45',
    maxEjectionPercent: '40',
    natsUrl: 'nats://127.0.0.1:4222',
    nodeId: 'coord-a',
    nodeTtlMs: '4000',
    publicOrigin: 'wss://pool.example.com',
    tokenTtl: '14d',
    tokenGrace: '5m',
    mintRateAddress: '20/h',
    mintRatePrefix: '50/h',
    mintRateGlobal: 'off',
    recoveryRate: '3/h',
    mintRateNewcomer: '10/h',
    healRate: '60/h',
    admissionDeadlineS: '15',
    maxPending: '512',
    maxPendingPerAddress: '4',
    maxSessionsPerAddress: '100',
    maxUnprovenPerAddress: '8',
  }
  t.strictSame(readEnv(env), expected)
  t.strictSame(
    readEnv({}),
    {
      host: undefined,
      port: undefined,
      databaseUrl: undefined,
      dataDir: undefined,
      operatorKey: undefined,
      requireProviderTokens: undefined,
      trustProxy: undefined,
      logLevel: undefined,
      logFormat: undefined,
      metricsRequireKey: undefined,
      maxBodyBytes: undefined,
      requestTimeoutS: undefined,
      firstChunkTimeoutS: undefined,
      configFile: undefined,
      drainTimeoutS: undefined,
      maxEjectionPercent: undefined,
      natsUrl: undefined,
      nodeId: undefined,
      nodeTtlMs: undefined,
      publicOrigin: undefined,
      tokenTtl: undefined,
      tokenGrace: undefined,
      mintRateAddress: undefined,
      mintRatePrefix: undefined,
      mintRateGlobal: undefined,
      recoveryRate: undefined,
      mintRateNewcomer: undefined,
      healRate: undefined,
      admissionDeadlineS: undefined,
      maxPending: undefined,
      maxPendingPerAddress: undefined,
      maxSessionsPerAddress: undefined,
      maxUnprovenPerAddress: undefined,
    },
    'an empty env yields no values',
  )
  const c = envToConfig(readEnv(env))
  t.strictSame(c.cluster, { natsServers: ['nats://127.0.0.1:4222'], nodeId: 'coord-a', timing: { ttlMs: 4_000, marginMs: 1_200, renewIntervalMs: 800 } })
  t.equal(c.port, 1234)
  t.equal(c.live.requireProviderTokens, true)
  t.equal(c.trustProxy, false)
  t.equal(c.operatorKey, GOOD_KEY)
  t.equal(c.metricsRequireKey, true)
  t.same([c.limits.maxBodyBytes, c.limits.requestTimeoutMs, c.limits.firstChunkTimeoutMs], [2048, 120_000, 15_000])
  t.same(c.limits.mint, {
    mintPerAddress: { burst: 20, periodMs: 3_600_000 },
    mintPerPrefix: { burst: 50, periodMs: 3_600_000 },
    mintGlobal: null,
    mintNewcomer: { burst: 10, periodMs: 3_600_000 },
    recoveryPerId: { burst: 3, periodMs: 3_600_000 },
    healPerId: { burst: 60, periodMs: 3_600_000 },
  })
  t.same(
    [c.limits.admissionDeadlineMs, c.limits.maxPendingConnections, c.limits.maxPendingPerIp, c.limits.maxSessionsPerAddress, c.limits.maxUnprovenPerAddress],
    [15_000, 512, 4, 100, 8],
  )
  const defaults = envToConfig(readEnv({}))
  t.same(
    [defaults.metricsRequireKey, defaults.limits.maxBodyBytes, defaults.limits.requestTimeoutMs, defaults.limits.firstChunkTimeoutMs],
    [false, 1024 * 1024, 300_000, 60_000],
  )
  for (const [name, raw] of [
    ['COORD_MAX_BODY_BYTES', '12'],
    ['COORD_MAX_BODY_BYTES', '1e6'],
    ['COORD_REQUEST_TIMEOUT_S', '0'],
    ['COORD_FIRST_CHUNK_TIMEOUT_S', '-5'],
    ['COORD_FIRST_CHUNK_TIMEOUT_S', 'soon'],
    ['COORD_METRICS_REQUIRE_KEY', 'maybe'],
  ] as const) {
    const err = thrown(() => envToConfig(readEnv({ [name]: raw })))
    t.ok(err instanceof ConfigError && err.message.startsWith(name), `${name}=${raw} is refused by name`)
  }
  const emptyKey = thrown(() => envToConfig(readEnv({ COORD_OPERATOR_KEY: '' })))
  t.ok(emptyKey instanceof ConfigError, 'COORD_OPERATOR_KEY= (empty) is refused end to end')
})

t.test('the live settings file: JSON or YAML, strict keys, and the environment wins', async (t) => {
  const { parseConfigFile } = await import('../../src/config-file.js')
  t.strictSame(parseConfigFile('require_provider_tokens: true\nlog_level: debug\n', 'x.yaml'), { requireProviderTokens: true, logLevel: 'debug' })
  t.strictSame(parseConfigFile('{"require_provider_tokens": false}', 'x.json'), { requireProviderTokens: false })
  t.strictSame(parseConfigFile('', 'x.yml'), {}, 'an empty file sets nothing')
  const bad: Array<[string, string, RegExp]> = [
    ['require_provider_token: true', 'x.yaml', /unknown setting "require_provider_token"/],
    ['require_provider_tokens: "yes"', 'x.yaml', /must be true or false/],
    ['log_level: loud', 'x.yaml', /log_level must be one of/],
    ['{"require_provider_tokens": tru', 'x.json', /not valid JSON/],
    ['a: [1, 2', 'x.yaml', /not valid YAML/],
    ['- 1\n- 2', 'x.yaml', /must hold a mapping/],
    ['require_provider_tokens = true', 'x.toml', /\.json, \.yaml or \.yml/],
  ]
  for (const [text, path, message] of bad) {
    const err = thrown(() => parseConfigFile(text, path))
    t.ok(err instanceof ConfigError, `${text} refused`)
    t.match((err as Error).message, message)
  }
  const fromFile = envToConfig({}, {}, { requireProviderTokens: true, logLevel: 'warn' })
  t.strictSame(fromFile.live, { requireProviderTokens: true, logLevel: 'warn' })
  t.equal(fromFile.logLevel, 'warn')
  const envWins = envToConfig({ requireProviderTokens: 'false', logLevel: 'error' }, {}, { requireProviderTokens: true, logLevel: 'warn' })
  t.strictSame(envWins.live, { requireProviderTokens: false, logLevel: 'error' })
  t.strictSame(envWins.envLive, { requireProviderTokens: false, logLevel: 'error' })
})

t.test('cluster mode: COORD_NATS_URL, COORD_NODE_ID, and PostgreSQL required', async (t) => {
  const pg = 'postgres://u@h/db'
  const urls: Array<[string, string[]]> = [
    ['nats://127.0.0.1:4222', ['nats://127.0.0.1:4222']],
    ['nats://nats-1', ['nats://nats-1:4222']],
    ['nats://a:4222,nats://b:4223', ['nats://a:4222', 'nats://b:4223']],
    [' nats://a:1 , nats://b:2 ', ['nats://a:1', 'nats://b:2']],
    ['nats://[::1]:4222', ['nats://[::1]:4222']],
    ['nats://a:1/', ['nats://a:1']],
    [Array.from({ length: 16 }, (_, i) => `nats://n${i}:4222`).join(','), Array.from({ length: 16 }, (_, i) => `nats://n${i}:4222`)],
  ]
  for (const [raw, servers] of urls) {
    t.strictSame(
      envToConfig({ natsUrl: raw, databaseUrl: pg }).cluster,
      { natsServers: servers, nodeId: null, timing: { ttlMs: 10_000, marginMs: 3_000, renewIntervalMs: 2_000 } },
      raw.slice(0, 60),
    )
  }
  const badUrls: Array<[string, RegExp]> = [
    ['http://a:4222', /must start with nats:\/\//],
    ['127.0.0.1:4222', /is not a URL: use nats:\/\/host:port/],
    ['tls://a:4222', /must start with nats:\/\//],
    ['nats://', /has no host/],
    ['nats:host', /has no host/],
    ['nats://a:4222,', /entry 2 is empty/],
    ['nats://a:4222,,nats://b:1', /entry 2 is empty/],
    ['nats://user:secret@a:4222', /must not carry credentials/],
    ['nats://token@a:4222', /must not carry credentials/],
    ['nats://a:99999', /is not a URL/],
    ['nats://a b:1', /is not a URL/],
    ['nats://a:0', /port 0/],
    ['nats://a:1/path', /no path or query/],
    ['nats://a:1?x=1', /no path or query/],
    ['nats://a:1#f', /no path or query/],
    [`nats://${'h'.repeat(260)}:1`, /longer than 256/],
    [Array.from({ length: 17 }, (_, i) => `nats://n${i}:4222`).join(','), /more than 16 URLs/],
  ]
  for (const [raw, message] of badUrls) {
    const err = thrown(() => envToConfig({ natsUrl: raw, databaseUrl: pg }))
    t.ok(err instanceof ConfigError, `${raw.slice(0, 60)} is refused`)
    t.match((err as Error).message, /^COORD_NATS_URL/, 'the message names the variable')
    t.match((err as Error).message, message, raw.slice(0, 60))
    t.notMatch((err as Error).message, /secret/, 'and never echoes the URL')
  }
  for (const id of ['a', 'coord-1', '0', 'a'.repeat(63), 'node-0a1b2c3d']) {
    t.equal(envToConfig({ natsUrl: 'nats://a:1', databaseUrl: pg, nodeId: id }).cluster?.nodeId, id, `node id ${id}`)
  }
  for (const id of ['A', 'a.b', '-a', 'a_b', 'a'.repeat(64), 'é', 'a b']) {
    const err = thrown(() => envToConfig({ natsUrl: 'nats://a:1', databaseUrl: pg, nodeId: id }))
    t.ok(err instanceof ConfigError && /^COORD_NODE_ID must be/.test(err.message), `node id ${JSON.stringify(id)} is refused`)
  }
  const pglite = thrown(() => envToConfig({ natsUrl: 'nats://a:1' }))
  t.ok(pglite instanceof ConfigError, 'cluster mode on the embedded PGlite is a ConfigError (exit 2)')
  t.match((pglite as Error).message, /cluster mode \(COORD_NATS_URL\) needs PostgreSQL: set DATABASE_URL/)
  const { explainStartupFailure } = await import('../../src/startup-error.js')
  t.equal(explainStartupFailure(pglite, null).exitCode, 2, 'the start-up path exits 2')
  const stray = thrown(() => envToConfig({ nodeId: 'coord-a' }))
  t.ok(stray instanceof ConfigError && /COORD_NODE_ID applies only in cluster mode/.test(stray.message), 'COORD_NODE_ID alone is refused')
  t.equal(envToConfig({ natsUrl: '  ', nodeId: '' }).cluster, null, 'blank values leave cluster mode off')
  t.strictSame(envToConfig({ natsUrl: 'nats://a:1', databaseUrl: pg, nodeTtlMs: '4000' }).cluster?.timing, {
    ttlMs: 4000,
    marginMs: 1200,
    renewIntervalMs: 800,
  })
  for (const ttl of ['2999', '60001', '4s', '-1']) {
    const err = thrown(() => envToConfig({ natsUrl: 'nats://a:1', databaseUrl: pg, nodeTtlMs: ttl }))
    t.ok(err instanceof ConfigError && /COORD_NODE_TTL_MS must be an integer from 3000 to 60000/.test(err.message), `COORD_NODE_TTL_MS=${ttl} is refused`)
  }
  const { checkFenceTiming } = await import('../../src/cluster/fence-clock.js')
  for (const ttl of [3000, 3001, 4000, 10_000, 59_999, 60_000])
    t.doesNotThrow(() => checkFenceTiming(nodeTiming(ttl)), `the timing for ${ttl} ms obeys the fence rules`)
  const strayTtl = thrown(() => envToConfig({ nodeTtlMs: '4000' }))
  t.ok(strayTtl instanceof ConfigError && /COORD_NODE_TTL_MS applies only in cluster mode/.test(strayTtl.message), 'COORD_NODE_TTL_MS alone is refused')
})

t.test('identity v2 settings: origin, token TTL and grace', async (t) => {
  const base = { operatorKey: GOOD_KEY }
  const d = envToConfig(base).identity
  t.strictSame(d, { publicOrigin: null, tokenTtlMs: 30 * 86_400_000, tokenGraceMs: 600_000, previousKeyValidMs: 7 * 86_400_000 }, 'defaults')
  t.equal(envToConfig({ ...base, publicOrigin: 'wss://Pool.Example.com:443/' }).identity.publicOrigin, 'wss://pool.example.com', 'normalised to an origin')
  t.equal(envToConfig({ ...base, publicOrigin: 'ws://10.0.0.5:8080' }).identity.publicOrigin, 'ws://10.0.0.5:8080')
  for (const bad of ['https://pool.example.com', 'wss://pool.example.com/ws/provider', 'wss://u:p@pool.example.com', 'pool.example.com', 'wss://x?y=1']) {
    t.throws(() => envToConfig({ ...base, publicOrigin: bad }), { code: 'COORD_CONFIG_INVALID' }, `origin ${bad} refused`)
  }
  t.equal(envToConfig({ ...base, tokenTtl: '2h', tokenGrace: '1m' }).identity.tokenTtlMs, 7_200_000)
  for (const [ttl, grace] of [
    ['30m', undefined],
    ['400d', undefined],
    ['30', undefined],
    ['2h', '90m'],
    [undefined, '30s'],
    [undefined, '2d'],
  ]) {
    t.throws(() => envToConfig({ ...base, tokenTtl: ttl, tokenGrace: grace }), { code: 'COORD_CONFIG_INVALID' }, `ttl ${ttl} grace ${grace} refused`)
  }
})

t.test('EACCES: the port when binding, the data directory otherwise', async (t) => {
  const { explainStartupFailure } = await import('../../src/startup-error.js')
  const config = envToConfig({ port: '80', dataDir: '/srv/poolcoord' })
  const denied = (syscall: string, path?: string) => Object.assign(new Error('denied'), { code: 'EACCES', syscall, path })
  t.match(explainStartupFailure(denied('listen'), config, 'listen').message, /not allowed to listen on 127\.0\.0\.1:80/)
  const dir = explainStartupFailure(denied('open', '/srv/poolcoord/pglite/lost+found'), config, 'database')
  t.match(dir.message, /permission denied on \/srv\/poolcoord\/pglite\/lost\+found \(COORD_DATA_DIR=\/srv\/poolcoord\)/)
  t.notMatch(dir.message, /listen/, 'not blamed on the port')
})
