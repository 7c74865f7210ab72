/**
 * The layering, checked in CI (`npm run lint:deps`). An import against it fails the build.
 *
 * Packages: @poolcoord/protocol depends on nothing; the coordinator and the provider agent
 * depend on the protocol and never on each other.
 *
 * Inside the coordinator, from the bottom up:
 *   - pure core: pool/, admission/admission-machine, routing/ decisions (select-provider,
 *     failure-policy, list-models): plain data and `now`, no I/O, no shells;
 *   - drivers and stores: admission/admit, routing/dispatcher and the exchange, tokens/, db/;
 *     cluster/, the shell over NATS (only it imports @nats-io), around its pure cluster/fence-clock
 *     and the session lease rules, cluster/lease-value and cluster/lease-decision;
 *   - shells: http/ and ws/ (never each other), cli/;
 *   - the composition root: context.ts, service.ts, bin.ts. Nothing else imports them; shells
 *     take the context through the type-only app-context.ts.
 */
const COORD = '^packages/coordinator/src/'
const PURE_CORE = `${COORD}(pool/|admission/admission-machine\\.ts|routing/(select-provider|failure-policy|list-models)\\.ts|cluster/(fence-clock|lease-value|lease-decision|node-messages|pool-snapshot)\\.ts)`
const IO_LIBS = 'node_modules/(ws|pg|pg-[a-z-]+|kysely|kysely-pglite-dialect|@electric-sql/pglite|@nats-io/[a-z-]+|prom-client|pino|yaml|commander)/'

module.exports = {
  forbidden: [
    { name: 'no-circular', severity: 'error', from: {}, to: { circular: true } },
    {
      name: 'protocol-stands-alone',
      comment: 'The wire contract has no runtime dependencies and knows no implementation.',
      severity: 'error',
      from: { path: '^packages/protocol/src/' },
      to: { pathNot: ['^packages/protocol/src/', '^node:crypto$', '^crypto$'] },
    },
    {
      name: 'agent-is-not-the-coordinator',
      comment: 'The agent ships alone (scripts/check-agent-pack.sh): no coordinator code, no server dependencies.',
      severity: 'error',
      from: { path: '^packages/provider-agent/src/' },
      to: { path: ['^packages/coordinator/', 'node_modules/(pg|kysely|kysely-pglite-dialect|@electric-sql/pglite|@nats-io/[a-z-]+|prom-client|yaml)/'] },
    },
    {
      name: 'coordinator-is-not-the-agent',
      severity: 'error',
      from: { path: COORD },
      to: { path: '^packages/provider-agent/' },
    },
    {
      name: 'only-the-root-composes',
      comment: 'context.ts, service.ts and bin.ts import everything; nothing imports them but each other.',
      severity: 'error',
      from: { path: COORD, pathNot: `${COORD}(context|service|bin)\\.ts$` },
      to: { path: `${COORD}(context|service|bin)\\.ts$` },
    },
    {
      name: 'pure-core-has-no-io',
      comment: 'The admission machine, the pool rules, routing decisions, the fence clock and the session lease rules are pure functions over plain data.',
      severity: 'error',
      from: { path: PURE_CORE },
      to: {
        path: [
          `${COORD}(http|ws|cli|db)/`,
          `${COORD}tokens/token-store\\.ts`,
          `${COORD}routing/(dispatcher|exchange)`,
          `${COORD}(metrics|config|context|app-context)\\.ts`,
          `${COORD}cluster/(?!(fence-clock|lease-value|lease-decision|node-messages|pool-snapshot)\\.ts)`,
          IO_LIBS,
        ],
        dependencyTypesNot: ['type-only'],
      },
    },
    {
      name: 'only-cluster-speaks-nats',
      comment: 'cluster/ is the one shell over NATS; the rest of the coordinator sees its plain interface (isLive, events).',
      severity: 'error',
      from: { path: COORD, pathNot: `${COORD}cluster/` },
      to: { path: 'node_modules/@nats-io/' },
    },
    {
      name: 'domain-does-not-reach-up',
      comment: 'pool, routing, admission, tokens, cordons, admin, cluster and db never import a shell.',
      severity: 'error',
      from: { path: `${COORD}(pool|routing|admission|tokens|cordons|admin|cluster|db)/` },
      to: { path: `${COORD}(http|ws|cli)/` },
    },
    {
      name: 'http-and-ws-are-siblings',
      severity: 'error',
      from: { path: `${COORD}http/` },
      to: { path: `${COORD}ws/` },
    },
    {
      name: 'ws-and-http-are-siblings',
      severity: 'error',
      from: { path: `${COORD}ws/` },
      to: { path: `${COORD}http/` },
    },
    {
      name: 'cli-is-not-the-server',
      severity: 'error',
      from: { path: `${COORD}cli/` },
      to: { path: `${COORD}(http|ws|pool|routing|admission)/` },
    },
    {
      name: 'sources-do-not-import-tests',
      severity: 'error',
      from: { path: '^packages/[^/]+/src/' },
      to: { path: '^packages/[^/]+/test/' },
    },
    {
      name: 'no-dev-dependencies-at-run-time',
      severity: 'error',
      from: { path: '^packages/[^/]+/src/' },
      to: { dependencyTypes: ['npm-dev'] },
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)dist/' },
    tsPreCompilationDeps: true,
    combinedDependencies: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['poolcoord-source', 'import', 'types', 'default'],
      extensions: ['.ts', '.js', '.mjs'],
    },
  },
}
