/**
 * Downloads the files of a Hugging Face checkpoint that the runtime needs into the standard hub
 * cache (`models--ORG--NAME/{blobs,snapshots/<commit>,refs}`), through `@huggingface/hub`:
 * the commit and the file listing come from the Hub's API, the bytes from `resolve` (redirects
 * followed). A file already in the cache (from an earlier download or from Python) is not fetched
 * again; a partial one (`blobs/<hash>.incomplete`, the name Python uses too) is continued with a
 * range request; every file is checked against the hash the Hub lists before it is put in place.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { copyFile, mkdir, rename, stat, symlink, truncate, unlink, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { downloadFile, getRepoFolderName, HubApiError, listFiles, modelInfo, type ListFileEntry } from '@huggingface/hub';
import { isRuntimeFile } from './files.js';

export interface DownloadProgress {
  /** The file being fetched (or checked). */
  file: string;
  /** Bytes of the whole download done so far, files already cached included. */
  doneBytes: number;
  totalBytes: number;
}

export interface DownloadOptions {
  /** `ORG/NAME` */
  repo: string;
  /** A branch, tag or commit; `main` when absent. */
  revision?: string;
  /** The Hub's address, e.g. `https://huggingface.co` or a mirror. */
  endpoint: string;
  token?: string;
  cacheDir: string;
  signal?: AbortSignal;
  onProgress?: (progress: DownloadProgress) => void;
  /** How many times a dropped connection is resumed within one call (default 3). */
  retries?: number;
}

export interface DownloadResult {
  repo: string;
  commit: string;
  /** The snapshot folder: what `lookm.modelPath` / `--model` should point at. */
  snapshotPath: string;
  files: string[];
  /** Bytes fetched over the network by this call. */
  fetchedBytes: number;
  /** Files that were already in the cache. */
  reusedFiles: number;
}

/** A failure that says what went wrong and what to do; nothing half-written is put in place. */
export class HubDownloadError extends Error {
  constructor(
    message: string,
    readonly kind: 'auth' | 'not-found' | 'network' | 'integrity' | 'disk' | 'cancelled' | 'unsupported' | 'input',
  ) {
    super(message);
    this.name = 'HubDownloadError';
  }
}

const COMMIT = /^[0-9a-f]{40}$/;
const REPO = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;

export async function downloadModel(options: DownloadOptions): Promise<DownloadResult> {
  const { repo, endpoint, cacheDir, signal } = options;
  const revision = options.revision?.trim() || 'main';
  if (!REPO.test(repo) || repo.includes('..')) throw new HubDownloadError(`"${repo}" is not a Hugging Face repository name: write it as ORG/NAME, e.g. llava-hf/llava-1.5-7b-hf.`, 'input');
  if (options.token && !options.token.startsWith('hf_')) throw new HubDownloadError('The Hugging Face token must start with "hf_": check HF_TOKEN or the file written by `huggingface-cli login`.', 'auth');
  const fetchWithSignal: typeof fetch = (input, init) => fetch(input, { ...init, signal });
  const hub = { hubUrl: endpoint, accessToken: options.token, fetch: fetchWithSignal };
  const context = { repo, revision, endpoint, hasToken: Boolean(options.token), signal };

  const commit = await hubCall(context, async () => (COMMIT.test(revision) ? revision : (await modelInfo({ ...hub, name: repo, revision, additionalFields: ['sha'] })).sha));
  if (!commit || !COMMIT.test(commit)) throw new HubDownloadError(`${endpoint} did not give the commit of ${repo}@${revision}: is it a Hugging Face Hub (or a mirror of one)?`, 'network');
  const listed = await hubCall(context, async () => {
    const entries: ListFileEntry[] = [];
    for await (const entry of listFiles({ ...hub, repo, revision: commit, recursive: true })) entries.push(entry);
    return entries;
  });
  const wanted = listed.filter((e) => e.type === 'file' && isRuntimeFile(e.path));
  if (!wanted.some((e) => e.path === 'config.json') || !wanted.some((e) => e.path.endsWith('.safetensors'))) {
    throw new HubDownloadError(`${repo}@${revision} has no config.json with *.safetensors weights at its top level: LOOK-M loads Hugging Face LLaVA checkpoints in safetensors (e.g. the llava-hf repositories).`, 'unsupported');
  }

  const storage = join(cacheDir, getRepoFolderName({ type: 'model', name: repo }));
  const snapshotPath = join(storage, 'snapshots', commit);
  const totalBytes = wanted.reduce((sum, e) => sum + fileSize(e), 0);
  let doneBytes = 0;
  let fetchedBytes = 0;
  let reusedFiles = 0;
  await onDisk(cacheDir, storage, async () => {
    await mkdir(join(storage, 'blobs'), { recursive: true });
    await mkdir(snapshotPath, { recursive: true });
  });
  for (const entry of wanted) {
    const pointer = join(snapshotPath, entry.path);
    const blob = join(storage, 'blobs', blobName(entry));
    options.onProgress?.({ file: entry.path, doneBytes, totalBytes });
    if (await exists(pointer)) {
      reusedFiles++;
    } else if (await exists(blob)) {
      reusedFiles++;
      await onDisk(cacheDir, blob, () => linkBlob(blob, pointer));
    } else {
      fetchedBytes += await fetchBlob(context, hub, commit, entry, blob, options.retries ?? 3, (bytes) => options.onProgress?.({ file: entry.path, doneBytes: doneBytes + bytes, totalBytes }), cacheDir);
      await onDisk(cacheDir, blob, () => linkBlob(blob, pointer));
    }
    doneBytes += fileSize(entry);
  }
  if (!COMMIT.test(revision)) {
    await onDisk(cacheDir, storage, async () => {
      await mkdir(join(storage, 'refs', dirname(revision)), { recursive: true });
      await writeFile(join(storage, 'refs', revision), commit);
    });
  }
  options.onProgress?.({ file: '', doneBytes, totalBytes });
  return { repo, commit, snapshotPath, files: wanted.map((e) => e.path), fetchedBytes, reusedFiles };
}

/** LFS files are stored under their sha256, the others under their git blob id (as Python does). */
function blobName(entry: ListFileEntry): string {
  const name = entry.lfs?.oid ?? entry.oid;
  if (!name || !/^[0-9a-f]{40}([0-9a-f]{24})?$/.test(name)) throw new HubDownloadError(`The Hub listed ${entry.path} without a usable hash, so it cannot be checked: try again later or another mirror.`, 'integrity');
  return name;
}

function fileSize(entry: ListFileEntry): number {
  return entry.lfs?.size ?? entry.size;
}

/** Fetches one file into `blob`, resuming its `.incomplete` part, and checks its hash. Returns the bytes fetched. */
async function fetchBlob(context: HubContext, hub: HubParams, commit: string, entry: ListFileEntry, blob: string, retries: number, onBytes: (bytes: number) => void, cacheDir: string): Promise<number> {
  const partial = `${blob}.incomplete`;
  const size = fileSize(entry);
  let fetched = 0;
  for (let attempt = 0; ; attempt++) {
    let offset = await onDisk(cacheDir, partial, async () => (await exists(partial)) ? (await stat(partial)).size : 0);
    if (offset > size) {
      await onDisk(cacheDir, partial, () => truncate(partial, 0));
      offset = 0;
    }
    try {
      if (offset < size) {
        const file = await hubCall(context, () => downloadFile({ ...hub, repo: context.repo, path: entry.path, revision: commit, xet: false }));
        if (!file) throw new HubDownloadError(`${entry.path} is listed in ${context.repo} but the Hub answers that it does not exist: try again later.`, 'not-found');
        const body = Readable.fromWeb((offset > 0 ? file.slice(offset) : file).stream());
        await onDisk(cacheDir, partial, () =>
          appendAll(body, partial, (length) => {
            fetched += length;
            offset += length;
            onBytes(offset);
          }),
        );
      }
      break;
    } catch (error) {
      if (context.signal?.aborted) throw cancelled(context);
      if (error instanceof HubDownloadError && error.kind !== 'network') throw error;
      if (attempt >= retries) throw error instanceof HubDownloadError ? error : networkError(context, error, entry.path);
    }
  }
  const expected = entry.lfs ? entry.lfs.oid : entry.oid;
  const actual = await onDisk(cacheDir, partial, () => hashFile(partial, entry.lfs ? 'sha256' : 'git', size));
  if (actual !== expected) {
    await unlink(partial).catch(() => undefined);
    throw new HubDownloadError(`${entry.path}: the downloaded bytes do not match the ${entry.lfs ? 'sha256' : 'git hash'} the Hub publishes (expected ${expected}, got ${actual}); the damaged file was deleted and no model was selected. Download again; if it happens again, the mirror or a proxy is corrupting it.`, 'integrity');
  }
  await onDisk(cacheDir, blob, () => rename(partial, blob));
  return fetched;
}

/**
 * Appends the body to `file`. Everything received is written, even when the body breaks off (a
 * dropped connection, a cancel), so that the next attempt resumes exactly after it.
 */
async function appendAll(body: Readable, file: string, onChunk: (length: number) => void): Promise<void> {
  const out = createWriteStream(file, { flags: 'a' });
  let failure: unknown;
  out.on('error', (error) => (failure ??= error));
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      if (failure) break;
      if (!out.write(chunk)) await once(out, 'drain');
      onChunk(chunk.length);
    }
  } finally {
    if (!out.destroyed) await new Promise<void>((resolve) => out.end(resolve));
  }
  if (failure) throw failure as Error;
}

/** sha256 of the file, or git's blob id (sha1 of `blob <size>\0` + content) for files not in LFS. */
async function hashFile(file: string, kind: 'sha256' | 'git', size: number): Promise<string> {
  const hash = createHash(kind === 'sha256' ? 'sha256' : 'sha1');
  if (kind === 'git') hash.update(`blob ${size}\0`);
  for await (const chunk of createReadStream(file) as AsyncIterable<Buffer>) hash.update(chunk);
  return hash.digest('hex');
}

/** A relative symlink snapshot → blob (the cache can move); a copy where symlinks are not allowed (Windows without developer mode). */
async function linkBlob(blob: string, pointer: string): Promise<void> {
  await mkdir(dirname(pointer), { recursive: true });
  await unlink(pointer).catch(() => undefined); // a dangling link left by a deleted blob
  try {
    await symlink(relative(dirname(pointer), blob), pointer);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') throw error;
    await copyFile(blob, pointer);
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

type HubParams = { hubUrl: string; accessToken?: string; fetch: typeof fetch };
type HubContext = { repo: string; revision: string; endpoint: string; hasToken: boolean; signal?: AbortSignal };

function cancelled(context: HubContext): HubDownloadError {
  return new HubDownloadError(`The download of ${context.repo} was cancelled; what was fetched is kept and the next download continues from there.`, 'cancelled');
}

function networkError(context: HubContext, error: unknown, file?: string): HubDownloadError {
  const cause = error instanceof Error ? ((error.cause as Error | undefined)?.message ?? error.message) : String(error);
  return new HubDownloadError(`${file ? `${file}: ` : ''}the connection to ${context.endpoint} failed (${cause}). Check the network (or lookm.hubEndpoint / HF_ENDPOINT); downloading again continues where this stopped.`, 'network');
}

/** Runs a Hub request, turning its failures into messages that say what to do. */
async function hubCall<T>(context: HubContext, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (error instanceof HubDownloadError) throw error;
    if (context.signal?.aborted) throw cancelled(context);
    if (error instanceof HubApiError) {
      const where = `${context.repo}@${context.revision}`;
      if (error.statusCode === 401 || error.statusCode === 403) {
        const what = context.hasToken
          ? 'the token given was refused: check that it is valid and that you accepted the model\'s conditions'
          : 'it is gated or private: accept its conditions on its page, then give a token (HF_TOKEN, or `huggingface-cli login`)';
        throw new HubDownloadError(`${where}: access denied by ${context.endpoint} (HTTP ${error.statusCode}); ${what} (${context.endpoint}/${context.repo}).`, 'auth');
      }
      if (error.statusCode === 404) throw new HubDownloadError(`${where} was not found on ${context.endpoint}: check the repository name and revision.`, 'not-found');
      throw new HubDownloadError(`${where}: ${context.endpoint} answered HTTP ${error.statusCode} (${error.message.split('. URL:')[0]}). Try again later.`, 'network');
    }
    if (error instanceof TypeError && error.message.includes('token')) throw new HubDownloadError(error.message, 'auth');
    throw networkError(context, error);
  }
}

/** Runs a file-system step, turning disk-full and permission errors into messages that say what to do. */
async function onDisk<T>(cacheDir: string, path: string, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC' || code === 'EDQUOT') {
      throw new HubDownloadError(`The disk is full while writing ${path}: free some space (the partial file is kept, the next download continues it), or set HF_HUB_CACHE to a folder on a larger disk.`, 'disk');
    }
    if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
      throw new HubDownloadError(`Cannot write ${path} (${code}): the Hugging Face cache ${cacheDir} is not writable by you. Fix its permissions, or set HF_HUB_CACHE (or HF_HOME) to a writable folder.`, 'disk');
    }
    throw error;
  }
}

