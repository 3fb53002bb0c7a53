/**
 * Downloading a checkpoint from a local stand-in for the Hub (test/hub/hubServer.ts): the cache
 * layout Python uses, only the runtime's files, reuse, resume after a dropped connection, a
 * corrupted byte refused, a gated repository, unwritable and full disks, cancellation.
 */
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';
import { downloadModel, HubDownloadError, type DownloadOptions } from '../../sidecar/src/client/hub/download.js';
import { findCachedModels } from '../../sidecar/src/client/hub/cached.js';
import { COMMIT, hostFolder, startLocalHub, type LocalHub } from './hubServer.js';

const root = join(__dirname, '../..');
const tinyModel = join(root, 'test/fixtures/models/tiny-llava-llama');
const REPO = 'lookm-test/tiny-llava';
const RUNTIME_FILES = ['chat_template.json', 'config.json', 'generation_config.json', 'model.safetensors', 'preprocessor_config.json', 'processor_config.json', 'special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json'];

let hub: LocalHub;
let cacheDir: string;
const weights = readFileSync(join(tinyModel, 'model.safetensors'));

before(async () => {
  hub = await startLocalHub({ [REPO]: hostFolder(tinyModel), 'lookm-test/gated': hostFolder(tinyModel) });
});
after(() => hub.close());
beforeEach(() => {
  cacheDir = mkdtempSync(join(tmpdir(), 'lookm-hub-'));
  hub.requests.length = 0;
  hub.dropAfter.clear();
  hub.corrupt.clear();
  hub.gated.clear();
});

const options = (extra: Partial<DownloadOptions> = {}): DownloadOptions => ({ repo: REPO, endpoint: hub.url, cacheDir, ...extra });
const storage = () => join(cacheDir, 'models--lookm-test--tiny-llava');
const weightsSha = () => hub.files(REPO).get('model.safetensors')!.oid;
const bodyRequests = (path: string) => hub.requests.filter((r) => r.url.endsWith(`/${path}`) && r.range !== 'bytes=0-0');

async function rejectsWith(promise: Promise<unknown>, kind: HubDownloadError['kind'], message: RegExp): Promise<HubDownloadError> {
  const error = await promise.then(
    () => assert.fail('the download should have failed'),
    (e: unknown) => e,
  );
  assert.ok(error instanceof HubDownloadError, String(error));
  assert.equal(error.kind, kind, error.message);
  assert.match(error.message, message);
  return error;
}

describe('downloadModel against a local Hub', () => {
  test('fetches only the runtime files into the Hugging Face cache layout, each checked, and the snapshot loads as a model folder', async () => {
    const progress: number[] = [];
    const result = await downloadModel(options({ onProgress: (p) => progress.push(p.doneBytes) }));
    assert.equal(result.commit, COMMIT);
    assert.equal(result.snapshotPath, join(storage(), 'snapshots', COMMIT));
    assert.deepEqual([...result.files].sort(), RUNTIME_FILES);
    for (const name of RUNTIME_FILES) assert.deepEqual(readFileSync(join(result.snapshotPath, name)), readFileSync(join(tinyModel, name)), name);
    // Relative links into blobs/, named by sha256 (LFS) or git blob id, as huggingface_hub does.
    assert.equal(readlinkSync(join(result.snapshotPath, 'model.safetensors')), join('..', '..', 'blobs', weightsSha()));
    assert.equal(readlinkSync(join(result.snapshotPath, 'config.json')), join('..', '..', 'blobs', hub.files(REPO).get('config.json')!.oid));
    assert.equal(readFileSync(join(storage(), 'refs', 'main'), 'utf8'), COMMIT);
    assert.ok(!existsSync(join(result.snapshotPath, 'README.md')) && !existsSync(join(result.snapshotPath, 'pytorch_model.bin')));
    assert.equal(hub.requests.filter((r) => /pytorch_model|README|onnx/.test(r.url)).length, 0, 'unneeded files are not requested');
    assert.equal(result.fetchedBytes, RUNTIME_FILES.reduce((sum, name) => sum + statSync(join(tinyModel, name)).size, 0));
    assert.equal(progress.at(-1), result.fetchedBytes);
    assert.deepEqual(await findCachedModels(cacheDir), [{ repo: REPO, commit: COMMIT, path: result.snapshotPath }]);
  });

  test('a model already in the cache is not downloaded again; a blob without its link is linked, not fetched', async () => {
    await downloadModel(options());
    hub.requests.length = 0;
    const again = await downloadModel(options());
    assert.equal(again.fetchedBytes, 0);
    assert.equal(again.reusedFiles, RUNTIME_FILES.length);
    assert.equal(hub.requests.filter((r) => r.url.includes('/resolve/') || r.url.startsWith('/cdn/')).length, 0);
    // What Python leaves when a snapshot of another commit shared the blob.
    rmSync(join(again.snapshotPath, 'model.safetensors'));
    const relinked = await downloadModel(options());
    assert.equal(relinked.fetchedBytes, 0);
    assert.deepEqual(readFileSync(join(relinked.snapshotPath, 'model.safetensors')), weights);
  });

  test('a connection dropped mid-file is resumed with a range request, not restarted', async () => {
    hub.dropAfter.set('model.safetensors', 200_000);
    const result = await downloadModel(options());
    assert.deepEqual(readFileSync(join(result.snapshotPath, 'model.safetensors')), weights);
    const bodies = bodyRequests('model.safetensors');
    assert.equal(bodies.length, 2, JSON.stringify(bodies));
    // What reached the disk before the drop (fetch discards what it had queued when the body fails).
    const resumedAt = Number(/^bytes=(\d+)-/.exec(bodies[1].range ?? '')?.[1]);
    assert.ok(resumedAt > 0 && resumedAt <= 200_000, bodies[1].range);
    assert.equal(bodies[1].range, `bytes=${resumedAt}-${weights.length - 1}`);
    assert.ok(!existsSync(join(storage(), 'blobs', `${weightsSha()}.incomplete`)));
  });

  test('a download interrupted in an earlier run continues from its .incomplete file', async () => {
    hub.dropAfter.set('model.safetensors', 300_000);
    await rejectsWith(downloadModel(options({ retries: 0 })), 'network', /model\.safetensors: the connection to .* failed.*continues where this stopped/);
    const partial = join(storage(), 'blobs', `${weightsSha()}.incomplete`);
    const kept = statSync(partial).size;
    assert.ok(kept > 0 && kept <= 300_000, String(kept));
    assert.ok(!existsSync(join(storage(), 'snapshots', COMMIT, 'model.safetensors')), 'nothing half-written is linked');
    const doneBefore = readdirSync(join(storage(), 'snapshots', COMMIT));
    hub.requests.length = 0;
    const result = await downloadModel(options());
    assert.deepEqual(readFileSync(join(result.snapshotPath, 'model.safetensors')), weights);
    assert.equal(bodyRequests('model.safetensors')[0].range, `bytes=${kept}-${weights.length - 1}`);
    const left = RUNTIME_FILES.filter((name) => !doneBefore.includes(name)).reduce((sum, name) => sum + statSync(join(tinyModel, name)).size, 0);
    assert.equal(result.fetchedBytes, left - kept, 'the kept bytes are not fetched again');
  });

  test('a corrupted byte is refused: the file is deleted, nothing is linked, and the message names the file', async () => {
    hub.corrupt.set('model.safetensors', 123_456);
    await rejectsWith(downloadModel(options()), 'integrity', /model\.safetensors: the downloaded bytes do not match the sha256 the Hub publishes .*deleted and no model was selected/);
    assert.ok(!existsSync(join(storage(), 'blobs', weightsSha())));
    assert.ok(!existsSync(join(storage(), 'blobs', `${weightsSha()}.incomplete`)));
    assert.ok(!existsSync(join(storage(), 'snapshots', COMMIT, 'model.safetensors')));
    assert.deepEqual(await findCachedModels(cacheDir), [], 'no usable snapshot is left to select');
  });

  test('a small (non-LFS) file is checked against its git blob id', async () => {
    hub.corrupt.set('tokenizer.json', 10);
    await rejectsWith(downloadModel(options()), 'integrity', /tokenizer\.json: .*git hash/);
  });

  test('a gated repository without a token says so and what to do; with the token it downloads', async () => {
    hub.gated.set('lookm-test/gated', 'hf_secret');
    await rejectsWith(downloadModel(options({ repo: 'lookm-test/gated' })), 'auth', /access denied .*HTTP 401.*gated or private: accept its conditions.*HF_TOKEN/);
    await rejectsWith(downloadModel(options({ repo: 'lookm-test/gated', token: 'hf_wrong' })), 'auth', /the token given was refused/);
    const result = await downloadModel(options({ repo: 'lookm-test/gated', token: 'hf_secret' }));
    assert.deepEqual(readFileSync(join(result.snapshotPath, 'model.safetensors')), weights);
    assert.ok(hub.requests.filter((r) => r.url.startsWith('/cdn/')).every((r) => r.authorization === 'Bearer hf_secret'));
  });

  test('an unknown repository or revision, or a malformed name, is said plainly', async () => {
    await rejectsWith(downloadModel(options({ repo: 'lookm-test/missing' })), 'not-found', /lookm-test\/missing@main was not found/);
    await rejectsWith(downloadModel(options({ revision: 'v9' })), 'not-found', /@v9 was not found/);
    await rejectsWith(downloadModel(options({ repo: '../etc' })), 'input', /ORG\/NAME/);
  });

  test('an unwritable cache says which folder and what to do', async () => {
    // root ignores permission bits: /sys refuses any new folder (EPERM) even to root.
    let unwritable: string;
    if (process.getuid?.() === 0) {
      unwritable = '/sys/lookm-test-cache/hub';
    } else {
      unwritable = join(cacheDir, 'readonly');
      mkdirSync(unwritable, { mode: 0o555 });
    }
    await rejectsWith(downloadModel(options({ cacheDir: unwritable })), 'disk', /Cannot write .* \((EACCES|EPERM|EROFS)\): the Hugging Face cache .* is not writable by you.*HF_HUB_CACHE/);
  });

  test('a full disk says so and keeps what was fetched', { skip: process.platform !== 'linux' && 'needs /dev/full' }, async () => {
    // The partial file is a link to /dev/full, which answers every write with ENOSPC.
    mkdirSync(join(storage(), 'blobs'), { recursive: true });
    symlinkSync('/dev/full', join(storage(), 'blobs', `${weightsSha()}.incomplete`));
    await rejectsWith(downloadModel(options()), 'disk', /The disk is full while writing .*\.incomplete.*free some space/);
    assert.ok(lstatSync(join(storage(), 'blobs', `${weightsSha()}.incomplete`)).isSymbolicLink());
  });

  test('cancelling stops the download and keeps the partial file for later', async () => {
    const controller = new AbortController();
    const error = await rejectsWith(
      downloadModel(options({ signal: controller.signal, onProgress: (p) => p.file === 'model.safetensors' && p.doneBytes > 0 && controller.abort() })),
      'cancelled',
      /cancelled; what was fetched is kept/,
    );
    assert.ok(error);
    assert.ok(!existsSync(join(storage(), 'snapshots', COMMIT, 'model.safetensors')));
  });

  test('a repository without safetensors weights is refused before anything is fetched', async () => {
    const files = hub.files(REPO);
    const saved = files.get('model.safetensors')!;
    files.delete('model.safetensors');
    try {
      await rejectsWith(downloadModel(options()), 'unsupported', /no config\.json with \*\.safetensors/);
    } finally {
      files.set('model.safetensors', saved);
    }
    assert.ok(!existsSync(storage()));
    writeFileSync(join(cacheDir, 'unrelated'), '');
  });
});
