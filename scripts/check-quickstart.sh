#!/usr/bin/env bash
# Runs the README's quick-start block exactly as written, in a copy of this checkout, and checks
# that a streamed answer arrived. Ports 8080 and 8081 must be free.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
for port in 8080 8081; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "check-quickstart: port $port is in use; the quick start needs it free" >&2
    exit 1
  fi
done
work=$(mktemp -d)
trap '[ -n "${KEEP_QUICKSTART:-}" ] || rm -rf "$work"' EXIT
block="$work/quickstart.sh"
awk '/<!-- quickstart:begin -->/{inside=1; next} /<!-- quickstart:end -->/{inside=0} inside && !/^```/' README.md >"$block"
[ -s "$block" ] || { echo "check-quickstart: no quick-start block in README.md" >&2; exit 1; }
# A copy of the checkout (no node_modules, no data), so the block starts as a newcomer's clone does.
git ls-files -z --cached --others --exclude-standard | (cd "$root" && xargs -0 tar -cf -) | (cd "$work" && mkdir clone && cd clone && tar -xf -)
# The agent keeps its identity under $HOME: a fresh one, as on a new machine.
export HOME="$work/home"
mkdir -p "$HOME"
# Whatever the block leaves running (it should stop everything itself) is found by its working
# directory and stopped, so that nothing outlives the check.
leftovers() {
  for p in /proc/[0-9]*; do
    case "$(readlink "$p/cwd" 2>/dev/null)" in "$work/clone"*) echo "${p#/proc/}" ;; esac
  done
}
status=0
(cd "$work/clone" && exec timeout 600 bash -e "$block") >"$work/out" 2>"$work/err" </dev/null || status=$?
for _ in $(seq 1 50); do
  [ -z "$(leftovers)" ] && break
  sleep 0.2
done
if [ -n "$(leftovers)" ]; then
  echo "check-quickstart: still running 10 s after the block ended:" >&2
  for p in $(leftovers); do echo "  $p $(tr "\\0" " " <"/proc/$p/cmdline" 2>/dev/null)" >&2; done
  tail -n 30 "$work/out" "$work/err" >&2
  kill -KILL $(leftovers) 2>/dev/null || true
  status=1
fi
if [ "$status" -ne 0 ]; then
  echo "check-quickstart: the block failed (exit $status)" >&2
  tail -n 40 "$work/out" "$work/err" >&2
  exit 1
fi
grep -q '^data: \[DONE\]' "$work/out" || { echo "check-quickstart: no streamed answer" >&2; tail -n 40 "$work/out" "$work/err" >&2; exit 1; }
grep -q 'mock-llama' "$work/out" || { echo "check-quickstart: the answer does not name mock-llama" >&2; exit 1; }
grep -Eq '^1 provider, 1 routable' "$work/out" || { echo "check-quickstart: coordinator-cli status did not show the provider" >&2; tail -n 20 "$work/out" >&2; exit 1; }
echo "check-quickstart: ok ($(grep -c '^data: ' "$work/out") SSE events, then coordinator-cli status)"
