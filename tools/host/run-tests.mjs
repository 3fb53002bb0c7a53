#!/usr/bin/env node
/* global console, setTimeout, clearTimeout, setInterval, clearInterval, fetch, AbortSignal, document -- Node globals (the repo's ESLint config only declares process), and the browser's in functions evaluated in its frames */
// Runs a VS Code extension's integration tests inside a real VS Code host, offline:
// code-server (VS Code 1.117 server + workbench, installed by tools/host/setup.sh and run by the
// Node 22 that setup.sh installs next to it) driven by a headless Chromium through playwright-core.
// The test module is loaded through the extensionTestsPath payload exactly as @vscode/test-electron
// does, and the exit code the workbench reports through window.codeAutomationExit becomes this
// process's exit code.
//
//   node tools/host/run-tests.mjs --extension /abs/ext --tests /abs/out/test/index.js
//        [--workspace /abs/dir] [--timeout 120] [--results out.json] [--verbose|--quiet] [--keep-temp]
//        [--host-dir /abs/.host] [--browser /usr/lib/chromium/chromium] [--env NAME=VALUE ...]
//        [--screenshots DIR]   (tests may ask for PNGs of the workbench: see test/host/suite.ts)
//        [--extensions-dir DIR] (extensions installed there are the host's installed extensions)
//
// Tests may also ask for browser actions (type into the chat input as a user does, read the chat):
// request files in the folder named by LOOKM_HOST_ACTIONS_DIR, see runAction below.
//
// Exit codes: the tests' own code (0 = pass); 2 = runner/host error; 124 = timeout.
// Only loopback addresses are used: code-server binds 127.0.0.1 and the browser resolves no other
// host name.

import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { hostLayout } from './layout.mjs';

const LOOPBACK = '127.0.0.1';
const EXIT_ERROR = 2;
const EXIT_TIMEOUT = 124;

// ---------------------------------------------------------------------------------------------
function usage(msg) {
  if (msg) console.error(`run-tests: ${msg}`);
  console.error(
    'usage: node tools/host/run-tests.mjs --extension <abs dir with package.json> --tests <abs test module>\n' +
      '         [--workspace <dir>] [--timeout <s>=120] [--results <file>] [--verbose|--quiet] [--keep-temp]\n' +
      '         [--host-dir <dir>] [--browser <chromium binary>] [--env NAME=VALUE]...',
  );
  process.exit(EXIT_ERROR);
}

function parseArgs(argv) {
  const o = { timeout: 120, verbose: false, keepTemp: false, env: {} };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const [flag, inline] = a.includes('=') && a.startsWith('--') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const val = () => {
      if (inline !== undefined) return inline;
      if (i + 1 >= argv.length) usage(`${flag} needs a value`);
      return argv[++i];
    };
    switch (flag) {
      case '--extension': o.extension = val(); break;
      case '--tests': o.tests = val(); break;
      case '--workspace': o.workspace = val(); break;
      case '--timeout': o.timeout = Number(val()); break;
      case '--results': o.results = val(); break;
      case '--host-dir': o.hostDir = val(); break;
      case '--browser': o.browser = val(); break;
      case '--extensions-dir': o.extensionsDir = path.resolve(val()); break;
      case '--screenshots': o.screenshots = path.resolve(val()); fs.mkdirSync(o.screenshots, { recursive: true }); break;
      case '--env': {
        const kv = val();
        const eq = kv.indexOf('=');
        if (eq < 1) usage(`--env expects NAME=VALUE, got ${kv}`);
        o.env[kv.slice(0, eq)] = kv.slice(eq + 1);
        break;
      }
      case '--verbose': case '-v': o.verbose = true; break;
      case '--quiet': case '-q': o.quiet = true; break;
      case '--keep-temp': o.keepTemp = true; break;
      case '--help': case '-h': usage(); break;
      default: usage(`unknown argument ${a}`);
    }
  }
  if (!o.extension || !o.tests) usage('--extension and --tests are required');
  if (!Number.isFinite(o.timeout) || o.timeout <= 0) usage('--timeout must be a positive number of seconds');
  return o;
}

const t0 = Date.now();
const log = (...a) => console.log(`[host ${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s]`, ...a);

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, LOOPBACK, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function findBrowser(explicit) {
  const candidates = [explicit, process.env.CHROMIUM_PATH, '/usr/lib/chromium/chromium', '/usr/bin/chromium', '/usr/bin/chromium-browser'];
  for (const c of candidates) if (c && fs.existsSync(c)) return c;
  return null;
}

// Browser console messages that every run prints and that say nothing about the tests.
const NOISE = [
  /Resolving connection token|Resolved connection token/,
  /Creating a socket \(/,
  /^Failed to load resource/,                       // vsda 404s, blocked external names
  /ENOTFOUND open-vsx\.org|open-vsx\.org/,            // extension gallery (no network)
  /web worker extension host is started in a same-origin iframe/,
  /allow-scripts and allow-same-origin/,
  /Updating additional builtin extensions cache/,
  /\[Service Worker\]/,
  /ChatSessionStore:/,
  /^Overwriting extension <</,
  /Ignoring the error while validating workspace folder/,
  /\[reconnection-grace-time\]/,
  // 1.117: the built-in git extension needs @vscode/fs-copyfile, which code-server's npm package lacks
  /Activating extension 'vscode\.git' failed|Cannot find module '@vscode\/fs-copyfile'/,
];

// Extension-host console.log reaches the page as `%c[Extension Host] %c<fmt>`, 'color: …', …:
// fill the %s/%d/%o placeholders with the remaining args and drop the %c styling arguments.
function formatConsole(args) {
  if (!args.length || typeof args[0] !== 'string') return args.map(String).join(' ');
  let rest = args.slice(1);
  const out = args[0].replace(/%[csdifoOj%]/g, (m) => {
    if (m === '%%') return '%';
    if (!rest.length) return m === '%c' ? '' : m;
    const v = rest.shift();
    if (m === '%c') return '';
    return typeof v === 'string' ? v : JSON.stringify(v);
  });
  return [out, ...rest.map((v) => (typeof v === 'string' ? v : JSON.stringify(v)))].join(' ');
}

// ---------------------------------------------------------------------------------------------
async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const extension = path.resolve(opts.extension);
  const tests = path.resolve(opts.tests);
  if (!fs.existsSync(path.join(extension, 'package.json'))) usage(`no package.json in ${extension}`);
  if (!fs.existsSync(tests)) usage(`test module not found: ${tests}`);
  const extManifest = JSON.parse(fs.readFileSync(path.join(extension, 'package.json'), 'utf8'));
  if (extManifest.browser && !extManifest.main) {
    console.warn('run-tests: warning: the extension has a "browser" entry and no "main": it will not run in the Node extension host');
  }

  const { dir: hostDir, codeServer: csEntry, node: hostNode } = hostLayout(opts.hostDir);
  if (!fs.existsSync(csEntry) || !fs.existsSync(hostNode) || !fs.existsSync(path.join(hostDir, '.setup-complete'))) {
    console.error(`run-tests: the host is not installed in ${hostDir}: run tools/host/setup.sh first`);
    process.exit(EXIT_ERROR);
  }
  const { chromium } = createRequire(path.join(hostDir, 'package.json'))('playwright-core');
  const browserPath = findBrowser(opts.browser);
  if (!browserPath) {
    console.error('run-tests: no Chromium found (apt-get install chromium, or pass --browser)');
    process.exit(EXIT_ERROR);
  }

  // Everything code-server writes goes below one temp folder.
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vscode-host-'));
  const dirs = {
    userData: path.join(tmp, 'user-data'),
    extensions: path.join(tmp, 'extensions'),
    xdgConfig: path.join(tmp, 'xdg-config'),
    xdgData: path.join(tmp, 'xdg-data'),
    xdgCache: path.join(tmp, 'xdg-cache'),
    home: path.join(tmp, 'home'),
  };
  for (const d of Object.values(dirs)) fs.mkdirSync(d, { recursive: true });
  const workspace = path.resolve(opts.workspace || path.join(tmp, 'workspace'));
  fs.mkdirSync(workspace, { recursive: true });
  const resultsFile = path.join(tmp, 'results.json');
  // Browser actions the tests ask for (type into the chat input as a user does, read the chat):
  // NAME.action.json in this folder, answered with NAME.result.json (see hostAction in test/host/suite.ts).
  const actionsDir = path.join(tmp, 'actions');
  fs.mkdirSync(actionsDir);
  const configFile = path.join(tmp, 'config.yaml');
  fs.writeFileSync(configFile, 'auth: none\ncert: false\n');
  fs.mkdirSync(path.join(dirs.userData, 'User'), { recursive: true });
  fs.writeFileSync(
    path.join(dirs.userData, 'User', 'settings.json'),
    JSON.stringify(
      {
        'workbench.startupEditor': 'none',
        'workbench.enableExperiments': false,
        'workbench.tips.enabled': false,
        'telemetry.telemetryLevel': 'off',
        'update.mode': 'none',
        'extensions.autoCheckUpdates': false,
        'extensions.autoUpdate': false,
        'extensions.ignoreRecommendations': true,
        'security.workspace.trust.enabled': false,
        'git.autoRepositoryDetection': false,
      },
      null,
      2,
    ),
  );
  const csLog = path.join(tmp, 'code-server.log');

  let cs = null; // code-server child
  let browser = null;
  let finished = false;
  let exitCode = EXIT_ERROR;

  let cleaning = null;
  const cleanup = () => (cleaning ??= doCleanup());
  async function doCleanup() {
    if (browser) {
      await Promise.race([browser.close().catch(() => {}), sleep(5000)]);
      browser = null;
    }
    if (cs && cs.exitCode === null && cs.signalCode === null) {
      const exited = new Promise((r) => cs.once('exit', r));
      try { process.kill(-cs.pid, 'SIGTERM'); } catch { /* gone */ }
      const ok = await Promise.race([exited.then(() => true), sleep(5000).then(() => false)]);
      if (!ok) {
        try { process.kill(-cs.pid, 'SIGKILL'); } catch { /* gone */ }
        await Promise.race([exited, sleep(2000)]);
      }
    }
    // extension host and other children share code-server's process group
    if (cs) { try { process.kill(-cs.pid, 'SIGKILL'); } catch { /* none left */ } }
    cs = null;
    if (!opts.keepTemp) fs.rmSync(tmp, { recursive: true, force: true });
    else log(`temp folder kept: ${tmp}`);
  }

  let stopping = false;
  const onSignal = (sig) => {
    if (stopping) return;
    stopping = true;
    finished = true;
    log(`received ${sig}, stopping`);
    cleanup().finally(() => process.exit(128 + ({ SIGINT: 2, SIGTERM: 15, SIGHUP: 1 }[sig] || 15)));
  };
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, onSignal);

  const timer = setTimeout(() => {
    if (finished) return;
    finished = true;
    exitCode = EXIT_TIMEOUT;
    log(`TIMEOUT after ${opts.timeout} s: the tests did not finish`);
    printCsLogTail();
    cleanup().finally(() => process.exit(EXIT_TIMEOUT));
  }, opts.timeout * 1000);

  function printCsLogTail(n = 40) {
    try {
      const lines = fs.readFileSync(csLog, 'utf8').trimEnd().split('\n');
      console.log(`---- last ${Math.min(n, lines.length)} lines of code-server output ----`);
      console.log(lines.slice(-n).join("\n"));
    } catch { /* no log */ }
  }

  try {
    // ---- start code-server on a free loopback port (retry if the port got taken) ----
    let port;
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      const out = fs.openSync(csLog, 'a');
      cs = spawn(
        hostNode,
        [
          csEntry,
          '--auth', 'none',
          '--bind-addr', `${LOOPBACK}:${port}`,
          '--disable-telemetry',
          '--disable-update-check',
          '--disable-workspace-trust',
          '--disable-getting-started-override',
          '--disable-proxy',
          '--ignore-last-opened',
          '--user-data-dir', dirs.userData,
          '--extensions-dir', opts.extensionsDir ?? dirs.extensions,
          '--config', configFile,
        ],
        {
          cwd: tmp,
          detached: true, // own process group: we stop it and its extension hosts together
          stdio: ['ignore', out, out],
          env: {
            ...process.env,
            ...opts.env,
            HOME: dirs.home,
            XDG_CONFIG_HOME: dirs.xdgConfig,
            XDG_DATA_HOME: dirs.xdgData,
            XDG_CACHE_HOME: dirs.xdgCache,
            VSCODE_HOST_RESULTS_FILE: resultsFile,
            VSCODE_HOST_WORKSPACE: workspace,
            LOOKM_HOST_ACTIONS_DIR: actionsDir,
            ...(opts.screenshots ? { LOOKM_SCREENSHOT_DIR: opts.screenshots } : {}),
            // no proxies: everything is on loopback
            HTTP_PROXY: '', HTTPS_PROXY: '', http_proxy: '', https_proxy: '', NO_PROXY: '*', no_proxy: '*',
            PASSWORD: '', HASHED_PASSWORD: '', PORT: '',
          },
        },
      );
      fs.closeSync(out);
      log(`code-server pid ${cs.pid} on http://${LOOPBACK}:${port} (node ${hostNode}, temp ${tmp})`);
      const ready = await waitForServer(port, cs, 60000);
      if (ready) break;
      const text = fs.existsSync(csLog) ? fs.readFileSync(csLog, 'utf8') : '';
      if (attempt < 3 && /EADDRINUSE/.test(text)) { log('port taken, retrying'); continue; }
      printCsLogTail();
      throw new Error('code-server did not become ready');
    }
    if (opts.verbose) log('code-server ready');
    cs.once('exit', (code, sig) => {
      if (!finished) {
        log(`code-server exited early (code ${code}, signal ${sig})`);
        printCsLogTail();
        finished = true;
        exitCode = EXIT_ERROR;
        cleanup().finally(() => process.exit(EXIT_ERROR));
      }
    });

    // ---- the workbench URL with the test payload ----
    const remote = (p) => `vscode-remote://${LOOPBACK}:${port}${p.split(path.sep).map(encodeURIComponent).join('/')}`;
    const payload = [
      ['extensionDevelopmentPath', remote(extension)],
      ['extensionTestsPath', remote(tests)],
      ['skipWelcome', 'true'],
      ['skipReleaseNotes', 'true'],
    ];
    const url = `http://${LOOPBACK}:${port}/?folder=${encodeURIComponent(workspace)}&payload=${encodeURIComponent(JSON.stringify(payload))}`;
    if (opts.verbose) log(`opening ${url}`);

    // ---- headless Chromium ----
    const args = [
      '--disable-dev-shm-usage',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      // resolve no host name except loopback
      `--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE ${LOOPBACK}, EXCLUDE localhost`,
    ];
    if (process.getuid && process.getuid() === 0) args.push('--no-sandbox');
    browser = await chromium.launch({
      executablePath: browserPath,
      headless: true,
      args,
      timeout: 60000,
      // signals are handled here, so that code-server is stopped too
      handleSIGINT: false,
      handleSIGTERM: false,
      handleSIGHUP: false,
    });
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();

    const done = new Promise((resolve) => {
      page.exposeFunction('codeAutomationExit', (code) => {
        resolve(Number.isInteger(code) ? code : Number(code) || 0);
      });
    });
    page.on('console', async (msg) => {
      if (opts.quiet) return;
      // by default drop the workbench's known start-up noise; what is left is mostly what the
      // extension host prints (tests, the extension under test)
      if (!opts.verbose && NOISE.some((re) => re.test(msg.text()))) return;
      let args2;
      try { args2 = await Promise.all(msg.args().map((a) => a.jsonValue().catch(() => String(a)))); } catch { args2 = [msg.text()]; }
      const line = formatConsole(args2).replace(/^\s+/, '');
      if (line) console.log(`  [browser ${msg.type()}] ${line}`);
    });
    page.on('pageerror', (e) => { if (opts.verbose) log(`page error: ${e.message}`); });
    page.on('crash', () => log('page crashed'));

    log(`opening the workbench (extension ${extension}, tests ${tests})`);
    await page.goto(url, { waitUntil: 'domcontentloaded', timeout: 60000 });

    // Screenshots on request: the tests write NAME.request into the folder, we answer with NAME.png.
    const shooter = opts.screenshots && setInterval(async () => {
      for (const file of fs.readdirSync(opts.screenshots).filter((f) => f.endsWith('.request'))) {
        const name = file.slice(0, -'.request'.length);
        fs.rmSync(path.join(opts.screenshots, file));
        await page.screenshot({ path: path.join(opts.screenshots, `${name}.png`) }).catch((e) => log(`screenshot ${name} failed: ${e.message}`));
        log(`screenshot ${name}.png`);
      }
    }, 250);
    let acting = false;
    const actor = setInterval(async () => {
      if (acting) return;
      acting = true;
      try {
        for (const file of fs.readdirSync(actionsDir).filter((f) => f.endsWith('.action.json'))) {
          const name = file.slice(0, -'.action.json'.length);
          // Tests write requests whole (then rename); one that still does not parse is answered, not fatal.
          let request;
          try {
            request = JSON.parse(fs.readFileSync(path.join(actionsDir, file), 'utf8'));
          } catch (e) {
            request = { type: 'unreadable', error: e.message };
          }
          fs.rmSync(path.join(actionsDir, file));
          const result = await runAction(page, request).then((value) => ({ ok: true, ...value }), (e) => ({ ok: false, error: e && e.message ? e.message : String(e) }));
          if (opts.verbose || !result.ok) log(`action ${request.type}: ${result.ok ? 'done' : result.error}`);
          fs.writeFileSync(path.join(actionsDir, `${name}.result.json.tmp`), JSON.stringify(result));
          fs.renameSync(path.join(actionsDir, `${name}.result.json.tmp`), path.join(actionsDir, `${name}.result.json`));
        }
      } finally {
        acting = false;
      }
    }, 200);
    const code = await done;
    clearInterval(actor);
    if (shooter) clearInterval(shooter);
    if (finished) return; // timed out meanwhile
    finished = true;
    exitCode = code;
    log(`tests finished: codeAutomationExit(${code})`);
  } catch (e) {
    if (finished) return;
    finished = true;
    exitCode = EXIT_ERROR;
    log(`ERROR: ${e && e.stack ? e.stack : e}`);
  } finally {
    clearTimeout(timer);
  }

  // ---- results file ----
  if (fs.existsSync(resultsFile)) {
    const text = fs.readFileSync(resultsFile, 'utf8');
    console.log('---- results (written by the test module) ----');
    console.log(text.trimEnd());
    if (opts.results) fs.copyFileSync(resultsFile, path.resolve(opts.results));
  } else {
    log('no results file was written by the test module (VSCODE_HOST_RESULTS_FILE)');
  }
  // host trouble (not a failing assertion): show what code-server said
  if (exitCode === EXIT_ERROR || (exitCode !== 0 && !fs.existsSync(resultsFile)) || (opts.verbose && exitCode !== 0)) {
    printCsLogTail(opts.verbose ? 80 : 20);
  }

  await cleanup();
  log(`exit ${exitCode} (${exitCode === 0 ? 'PASS' : 'FAIL'}) in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  process.exit(exitCode);
}

/**
 * What the extension host cannot see: the workbench's DOM. For every frame (the workbench and its
 * webviews, nested ones included) its text and every <img> with whether it loaded. A frame that
 * cannot be read is listed with its error, so a probe never hangs a test.
 */
async function probeFrames(page) {
  const frames = [];
  for (const frame of page.frames()) {
    const entry = { url: frame.url(), name: frame.name(), text: '', images: [] };
    try {
      entry.text = await frame.evaluate(() => (document.body ? document.body.innerText.slice(0, 200000) : ''));
      entry.images = await frame.evaluate(() =>
        Array.from(document.images, (img) => ({
          src: (img.getAttribute('src') ?? '').slice(0, 1000),
          currentSrc: img.currentSrc.slice(0, 1000),
          alt: img.alt,
          className: typeof img.className === 'string' ? img.className : '',
          inExtensionEditor: !!img.closest('.extension-editor'),
          complete: img.complete,
          naturalWidth: img.naturalWidth,
          naturalHeight: img.naturalHeight,
        })),
      );
    } catch (e) {
      entry.error = e.message;
    }
    frames.push(entry);
  }
  return { frames };
}

// The chat view's input box (a Monaco editor) and its transcript, as a user sees them.
const CHAT_INPUT = '.interactive-session .interactive-input-editor';
const CHAT_ITEMS = '.interactive-session .interactive-item-container';

/**
 * One browser action asked for by the tests:
 * - `chatType` {text, submit, append}: clicks the visible chat input, types `text` key by key (as
 *   a user: the participant completion pops up on `@`), after what is there when `append`, and
 *   presses Enter when `submit`;
 * - `frames`: the text and images of every frame (probeFrames);
 * - `chatRead`: the visible chat's transcript (one text per request/response item) and the text
 *   of its input toolbars (the mode and model pickers).
 */
async function runAction(page, request) {
  switch (request.type) {
    case 'chatType': {
      const input = page.locator(CHAT_INPUT).filter({ visible: true }).first();
      await input.waitFor({ state: 'visible', timeout: 10000 });
      await input.click();
      // Clear what is typed there unless asked to add to it (an empty input is left alone: Backspace
      // there would remove an attached file).
      if (!request.append && (await input.locator('.view-lines').innerText()).trim()) {
        await page.keyboard.press('ControlOrMeta+A');
        await page.keyboard.press('Backspace');
      }
      if (request.append) await page.keyboard.press('ControlOrMeta+End');
      await page.keyboard.type(request.text, { delay: 15 });
      if (request.submit) {
        await sleep(300);
        // A completion list left open would take the Enter: close it first, as a user would.
        if (await page.locator('.interactive-session .suggest-widget.visible').count()) await page.keyboard.press('Escape');
        await page.keyboard.press('Enter');
      }
      return {};
    }
    case 'frames':
      return probeFrames(page);
    case 'chatRead': {
      const items = await page.locator(CHAT_ITEMS).filter({ visible: true }).allInnerTexts();
      const toolbar = await page.locator('.interactive-session .interactive-input-part').filter({ visible: true }).first().innerText().catch(() => '');
      return { items, toolbar };
    }
    default:
      throw new Error(`unknown action ${JSON.stringify(request.type)}`);
  }
}

async function waitForServer(port, child, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (child.exitCode !== null || child.signalCode !== null) return false;
    try {
      const r = await fetch(`http://${LOOPBACK}:${port}/healthz`, { signal: AbortSignal.timeout(2000) });
      if (r.ok) return true;
    } catch { /* not yet */ }
    await sleep(200);
  }
  return false;
}

main().catch((e) => {
  console.error(e);
  process.exit(EXIT_ERROR);
});
