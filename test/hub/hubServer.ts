/**
 * A local stand-in for the Hugging Face Hub on the loopback address, speaking the parts of its
 * HTTP protocol that `@huggingface/hub` uses for a download: the model's revision
 * (`/api/models/ORG/NAME/revision/REV` with its `sha`), the recursive tree listing
 * (`/api/models/ORG/NAME/tree/REV`, LFS files with their sha256), and `resolve` with the Hub's
 * headers (`X-Repo-Commit`, `ETag`, `X-Linked-Etag`, `X-Linked-Size`), LFS files redirected to a
 * "CDN" path, and byte ranges. Faults are injected per file: a connection dropped mid-body, a
 * flipped byte; repositories can be gated (401 without the right token).
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

export const COMMIT = 'a1b2c3d4e5f60718293a4b5c6d7e8f9012345678';

interface HostedFile {
  bytes: Buffer;
  lfs: boolean;
  /** sha256 for LFS files, git's blob sha1 for the others */
  oid: string;
}

export interface RequestSeen {
  url: string;
  range?: string;
  authorization?: string;
}

export interface LocalHub {
  url: string;
  requests: RequestSeen[];
  /** Drop the connection after this many body bytes of the next full-body response for a file. */
  dropAfter: Map<string, number>;
  /** Serve this file with the byte at this index flipped. */
  corrupt: Map<string, number>;
  /** Repositories that answer 401 unless this token is sent. */
  gated: Map<string, string>;
  files(repo: string): Map<string, HostedFile>;
  close(): Promise<void>;
}

function gitOid(bytes: Buffer): string {
  return createHash('sha1').update(`blob ${bytes.length}\0`).update(bytes).digest('hex');
}

/** A repository with the files of `dir`, plus files the runtime does not need (which must not be fetched). */
export function hostFolder(dir: string): Map<string, HostedFile> {
  const files = new Map<string, HostedFile>();
  const add = (path: string, bytes: Buffer) => {
    const lfs = /\.(safetensors|bin)$/.test(path);
    files.set(path, { bytes, lfs, oid: lfs ? createHash('sha256').update(bytes).digest('hex') : gitOid(bytes) });
  };
  for (const name of readdirSync(dir)) add(name, readFileSync(join(dir, name)));
  add('README.md', Buffer.from('# tiny\n'));
  add('pytorch_model.bin', Buffer.alloc(4096, 7));
  add('onnx/model.onnx', Buffer.alloc(100, 1));
  return files;
}

export async function startLocalHub(repos: Record<string, Map<string, HostedFile>>): Promise<LocalHub> {
  const hub: Omit<LocalHub, 'url' | 'close'> = {
    requests: [],
    dropAfter: new Map(),
    corrupt: new Map(),
    gated: new Map(),
    files: (repo) => repos[repo],
  };
  const server: Server = createServer((req, res) => handle(hub, repos, req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    ...hub,
    url,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

function handle(hub: Omit<LocalHub, 'url' | 'close'>, repos: Record<string, Map<string, HostedFile>>, req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://local');
  hub.requests.push({ url: url.pathname, range: req.headers.range, authorization: req.headers.authorization });
  const match = /^\/api\/models\/([^/]+\/[^/]+)\/(revision|tree)\/([^/]+)$/.exec(url.pathname);
  const resolveMatch = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
  const cdnMatch = /^\/cdn\/([^/]+\/[^/]+)\/(.+)$/.exec(url.pathname);
  const repo = match?.[1] ?? resolveMatch?.[1] ?? cdnMatch?.[1];
  if (!repo || !repos[repo]) return json(res, 404, { error: 'Repository not found' }, { 'X-Error-Code': 'RepoNotFound' });
  const token = hub.gated.get(repo);
  if (token !== undefined && req.headers.authorization !== `Bearer ${token}`) {
    return json(res, 401, { error: `Access to model ${repo} is restricted. You must have access to it and be authenticated to access it. Please log in.` }, { 'X-Error-Code': 'GatedRepo' });
  }
  const files = repos[repo];
  if (match) {
    const revision = decodeURIComponent(match[3]);
    if (revision !== 'main' && revision !== 'HEAD' && revision !== COMMIT) return json(res, 404, { error: 'Invalid rev id' }, { 'X-Error-Code': 'RevisionNotFound' });
    if (match[2] === 'revision') return json(res, 200, { _id: 'x', id: repo, sha: COMMIT, private: false, lastModified: '2026-01-01T00:00:00.000Z', downloads: 0, likes: 0, gated: token ? 'manual' : false });
    return json(
      res,
      200,
      [...files].map(([path, f]) => ({ type: 'file', path, size: f.lfs ? 134 : f.bytes.length, oid: f.lfs ? gitOid(Buffer.alloc(134)) : f.oid, ...(f.lfs ? { lfs: { oid: f.oid, size: f.bytes.length, pointerSize: 134 } } : {}) })),
    );
  }
  if (resolveMatch) {
    const path = resolveMatch[3];
    const file = files.get(path);
    if (!file) return json(res, 404, { error: 'Entry not found' }, { 'X-Error-Code': 'EntryNotFound' });
    const headers = { 'X-Repo-Commit': COMMIT, ETag: `"${file.oid}"` };
    if (file.lfs) {
      // As the Hub does: LFS files are redirected to storage, the hash in X-Linked-Etag.
      res.writeHead(302, { ...headers, 'X-Linked-Etag': `"${file.oid}"`, 'X-Linked-Size': String(file.bytes.length), Location: `/cdn/${repo}/${path}` });
      return void res.end();
    }
    return serveBytes(hub, path, file, req, res, headers);
  }
  const file = files.get(cdnMatch![2]);
  if (!file) return json(res, 404, { error: 'no such object' });
  serveBytes(hub, cdnMatch![2], file, req, res, { ETag: `"${file.oid}"` });
}

function serveBytes(hub: Omit<LocalHub, 'url' | 'close'>, path: string, file: HostedFile, req: IncomingMessage, res: ServerResponse, headers: Record<string, string>): void {
  let bytes = file.bytes;
  const flip = hub.corrupt.get(path);
  if (flip !== undefined) {
    bytes = Buffer.from(bytes);
    bytes[flip] ^= 0xff;
  }
  const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
  let start = 0;
  let end = bytes.length - 1;
  if (range) {
    start = Number(range[1]);
    end = range[2] ? Math.min(Number(range[2]), end) : end;
    if (start > end) {
      res.writeHead(416, { 'Content-Range': `bytes */${bytes.length}` });
      return void res.end();
    }
  }
  const body = bytes.subarray(start, end + 1);
  res.writeHead(range ? 206 : 200, { ...headers, 'Accept-Ranges': 'bytes', 'Content-Length': String(body.length), 'Content-Type': 'application/octet-stream', ...(range ? { 'Content-Range': `bytes ${start}-${end}/${bytes.length}` } : {}) });
  const drop = hub.dropAfter.get(path);
  if (drop !== undefined && body.length > drop && body.length > 1) {
    hub.dropAfter.delete(path);
    // The connection ends short of Content-Length, as when a proxy or the network drops it; the
    // pause lets the client take in what was sent (fetch drops what it has queued on an error).
    res.write(body.subarray(0, drop), () => setTimeout(() => res.socket?.end(), 150));
    return;
  }
  res.end(body);
}
