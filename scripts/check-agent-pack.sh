#!/usr/bin/env bash
# The provider agent ships on its own: `npm pack` of @poolcoord/protocol and
# @poolcoord/provider-agent, installed into an empty directory, must run
# `poolcoord-provider --help` and pull in none of the coordinator's server dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
npm run build >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
npm pack --silent --pack-destination "$work" -w @poolcoord/protocol -w @poolcoord/provider-agent >/dev/null
mkdir "$work/app"
cd "$work/app"
npm init -y >/dev/null
npm install --no-audit --no-fund --silent "$work"/poolcoord-protocol-*.tgz "$work"/poolcoord-provider-agent-*.tgz
./node_modules/.bin/poolcoord-provider --help | head -n 3
./node_modules/.bin/poolcoord-mock-backend --help >/dev/null
forbidden=(pg kysely @electric-sql/pglite kysely-pglite-dialect prom-client yaml @noble/hashes @poolcoord/coordinator)
for dep in "${forbidden[@]}"; do
  if [ -e "node_modules/$dep" ]; then
    echo "check-agent-pack: the agent install pulled in $dep" >&2
    exit 1
  fi
done
echo "check-agent-pack: ok ($(ls node_modules | wc -l) top-level packages, none of: ${forbidden[*]})"
