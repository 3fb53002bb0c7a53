/** `npm run model:download`: the same download from the command line, against the local Hub. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { COMMIT, hostFolder, startLocalHub, type LocalHub } from './hubServer.js';

const root = join(__dirname, '../..');
const tinyModel = join(root, 'test/fixtures/models/tiny-llava-llama');
let hub: LocalHub;

before(async () => {
  hub = await startLocalHub({ 'lookm-test/tiny-llava': hostFolder(tinyModel), 'lookm-test/gated': hostFolder(tinyModel) });
  hub.gated.set('lookm-test/gated', 'hf_secret');
});
after(() => hub.close());

async function cli(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  const rest = { ...process.env };
  delete rest.HF_TOKEN;
  delete rest.HUGGING_FACE_HUB_TOKEN;
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, ['--import', 'tsx', join(root, 'sidecar/src/cli/download.ts'), ...args], { cwd: root, env: { ...rest, HF_HOME: mkdtempSync(join(tmpdir(), 'lookm-hfhome-')), HF_ENDPOINT: hub.url, ...env } });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('npm run model:download', () => {
  test('downloads into HF_HUB_CACHE through HF_ENDPOINT, resuming a dropped connection, and prints the snapshot folder', async () => {
    const cache = mkdtempSync(join(tmpdir(), 'lookm-cli-'));
    hub.dropAfter.set('model.safetensors', 100_000);
    const run = await cli(['lookm-test/tiny-llava', '--revision', 'main'], { HF_HUB_CACHE: cache });
    assert.equal(run.code, 0, run.stderr);
    const snapshot = join(cache, 'models--lookm-test--tiny-llava', 'snapshots', COMMIT);
    assert.equal(run.stdout.trim(), snapshot);
    assert.deepEqual(readFileSync(join(snapshot, 'model.safetensors')), readFileSync(join(tinyModel, 'model.safetensors')));
    assert.ok(hub.requests.some((r) => r.url.endsWith('/model.safetensors') && /^bytes=[1-9]\d*-/.test(r.range ?? '')), 'resumed with a range');
    const again = await cli(['lookm-test/tiny-llava'], { HF_HUB_CACHE: cache });
    assert.match(again.stderr, /0\.0 MB fetched, 9 already in the cache/);
  });

  test('a corrupted file fails with exit code 1 and names the file', async () => {
    hub.corrupt.set('model.safetensors', 5000);
    try {
      const run = await cli(['lookm-test/tiny-llava'], { HF_HUB_CACHE: mkdtempSync(join(tmpdir(), 'lookm-cli-')) });
      assert.equal(run.code, 1);
      assert.equal(run.stdout, '');
      assert.match(run.stderr, /^error: model\.safetensors: the downloaded bytes do not match/m);
    } finally {
      hub.corrupt.clear();
    }
  });

  test('a gated model takes its token from HF_HOME/token (huggingface-cli login) or HF_TOKEN', async () => {
    const denied = await cli(['lookm-test/gated'], { HF_HUB_CACHE: mkdtempSync(join(tmpdir(), 'lookm-cli-')) });
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /HTTP 401.*gated or private/);
    const withToken = await cli(['lookm-test/gated'], { HF_HUB_CACHE: mkdtempSync(join(tmpdir(), 'lookm-cli-')), HF_TOKEN: 'hf_secret' });
    assert.equal(withToken.code, 0, withToken.stderr);
    const home = mkdtempSync(join(tmpdir(), 'lookm-hfhome-'));
    writeFileSync(join(home, 'token'), 'hf_secret\n');
    const loggedIn = await cli(['lookm-test/gated'], { HF_HOME: home });
    assert.equal(loggedIn.code, 0, loggedIn.stderr);
    assert.ok(existsSync(join(home, 'hub', 'models--lookm-test--gated', 'snapshots', COMMIT, 'config.json')), 'HF_HOME/hub is the cache');
  });

  test('no repository: the usage, exit code 2', async () => {
    const run = await cli([], {});
    assert.equal(run.code, 2);
    assert.match(run.stderr, /usage: npm run model:download -- ORG\/NAME/);
  });
});
