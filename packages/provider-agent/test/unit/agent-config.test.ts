import t from 'tap'
import { readAgentConfig } from '../../src/agent-config.js'

const WS = 'wss://pool.example/ws/provider'
const TOKEN = 'cd'.repeat(32)

t.test('defaults, and flags over the environment', async (t) => {
  const c = readAgentConfig(['--coordinator', WS], { HOME: '/home/u' })
  t.match(c, {
    coordinatorUrl: WS,
    backendUrl: 'http://127.0.0.1:11434/v1',
    providerId: null,
    stateDir: '/home/u/.local/state/poolcoord-provider',
    maxConcurrency: 1,
    maxContextTokens: 8192,
    models: null,
    importToken: null,
    logLevel: 'info',
  })
  t.equal(readAgentConfig([], { POOLCOORD_COORDINATOR_URL: WS, XDG_STATE_HOME: '/x' }).stateDir, '/x/poolcoord-provider')
  const both = readAgentConfig(['--max-concurrency', '4', '--model', 'a', 'b'], {
    POOLCOORD_COORDINATOR_URL: WS,
    POOLCOORD_MAX_CONCURRENCY: '2',
    POOLCOORD_MODELS: 'x,y',
    POOLCOORD_BACKEND_URL: 'http://gpu:8000/v1/',
  })
  t.equal(both.maxConcurrency, 4, 'the flag wins')
  t.same(both.models, ['a', 'b'])
  t.equal(both.backendUrl, 'http://gpu:8000/v1', 'trailing slash dropped')
  t.same(readAgentConfig([], { POOLCOORD_COORDINATOR_URL: WS, POOLCOORD_MODELS: ' x , y ,' }).models, ['x', 'y'])
})

t.test('an issued token comes from the environment or a file, never a flag, and must be well formed', async (t) => {
  const env: Record<string, string> = { POOLCOORD_PROVIDER_TOKEN: `${TOKEN}\n` }
  t.equal(readAgentConfig(['--coordinator', WS], env).importToken, TOKEN)
  t.notOk('POOLCOORD_PROVIDER_TOKEN' in env, 'removed from the environment once read')
  t.equal(readAgentConfig(['--coordinator', 'ws://pool.example/ws/provider', '--insecure'], {}).coordinatorUrl, 'ws://pool.example/ws/provider')
  t.equal(readAgentConfig(['--coordinator', 'ws://127.0.0.1:8080/ws/provider'], {}).coordinatorUrl, 'ws://127.0.0.1:8080/ws/provider', 'loopback needs no TLS')
  t.throws(() => readAgentConfig(['--coordinator', WS], { POOLCOORD_PROVIDER_TOKEN: 'nope' }), { code: 'AGENT_USAGE', message: /64 lowercase hex/ })
  t.throws(() => readAgentConfig(['--coordinator', WS, '--token', TOKEN], {}), { code: 'AGENT_USAGE', message: /unknown option/ })
  t.throws(() => readAgentConfig(['--coordinator', WS, '--token-file', '/nonexistent/x'], {}), { message: /cannot read --token-file/ })
})

t.test('usage errors say what is wrong', async (t) => {
  const bad: Array<[string[], Record<string, string>, RegExp]> = [
    [[], {}, /coordinator URL is required/],
    [['--coordinator', 'https://pool.example/ws/provider'], {}, /wss:\/\//],
    [['--coordinator', `${WS}?token=${TOKEN}`], {}, /query string/],
    [['--coordinator', WS, '--max-concurrency', '0'], {}, /1 to 256/],
    [['--coordinator', WS, '--backend', 'ftp://x'], {}, /http/],
    [['--coordinator', WS, '--log-level', 'loud'], {}, /log level/],
    [['--coordinator', 'wss://user:pw@pool.example/ws/provider'], {}, /user:password/],
    [['--coordinator', `${WS}#x`], {}, /fragment/],
    [['--coordinator', 'ws://pool.example/ws/provider'], {}, /clear text.*--insecure/],
    [[], { POOLCOORD_COORDINATOR_URL: WS, POOLCOORD_MAX_CONCURRENCY: 'many' }, /POOLCOORD_MAX_CONCURRENCY/],
  ]
  for (const [argv, env, why] of bad) t.throws(() => readAgentConfig(argv, env), { code: 'AGENT_USAGE', message: why }, argv.join(' ') || JSON.stringify(env))
})
