/**
 * Conversations persisted under the state directory, so a restarted sidecar resumes every one of
 * them by re-prefill: `sessions/<id>.json` (written atomically: a temporary file, then a rename),
 * `images/<sha256>` (each image once, whatever the number of sessions showing it) and `index.json`
 * (per session: its file's mtime and size and the images it shows).
 *
 * Start-up reads the index and the folder listing, not the transcripts: a conversation is parsed
 * on first use, and only the files the index does not describe (new, changed by another process,
 * damaged) are parsed at start, to learn their images. Everything is private to the user (files
 * 0600, folders 0700), and every path is resolved inside its folder from a validated name, so no
 * id or hash a client sends reaches a file outside. Retention (count, age, bytes) and the
 * collection of images no session shows keep the folder from growing forever.
 */
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { z } from 'zod';
import { ErrorCode, SESSION_ID_PATTERN, SessionId } from '../protocol/index.js';
import { SidecarError } from '../protocol/errors.js';
import type { Logger } from '../log.js';
import { Conversation, type ImageStore } from './conversation.js';
import { IMAGE_HASH_PATTERN, ImageHash, imagesOf, parsePersisted } from './persisted.js';

/** Limits on what the state folder keeps; 0 means no limit. */
export interface RetentionRules {
  maxSessions: number;
  maxAgeDays: number;
  maxStateBytes: number;
}

export const DEFAULT_RETENTION: RetentionRules = { maxSessions: 200, maxAgeDays: 90, maxStateBytes: 1024 * 2 ** 20 };

const PRIVATE_FILE = 0o600;
const PRIVATE_FOLDER = 0o700;
const DAY_MS = 86_400_000;
/**
 * Another sidecar (a second VS Code window) may share the folder: an image no session has shown,
 * written this recently by another process, may belong to its turn in flight, whose transcript is
 * not saved yet, so it is not collected.
 */
const FOREIGN_IMAGE_GRACE_MS = 3_600_000;
/** Temporary files older than this were left by a process that died between write and rename. */
const STALE_TEMPORARY_MS = 3_600_000;
const TEMPORARY = /\.(\d+)\.tmp$/;

/**
 * Whether a temporary file is a leftover: its writer (the pid in its name) is no longer running,
 * or it is older than any write takes. A sidecar killed between write and rename leaves one.
 */
function staleTemporary(name: string, mtimeMs: number, now: number): boolean {
  if (now - mtimeMs > STALE_TEMPORARY_MS) return true;
  const pid = Number(TEMPORARY.exec(name)?.[1]);
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/** `dir/name`, refusing any name that does not resolve to an entry directly inside `dir`. */
export function entryInside(dir: string, name: string): string {
  const root = resolve(dir);
  const path = resolve(root, name);
  if (dirname(path) !== root || basename(path) !== name) throw new Error(`refused a path outside ${root}: ${JSON.stringify(name.slice(0, 200))}`);
  return path;
}

function writePrivately(file: string, data: string | Uint8Array): void {
  const temporary = `${file}.${process.pid}.tmp`;
  writeFileSync(temporary, data, { mode: PRIVATE_FILE });
  chmodSync(temporary, PRIVATE_FILE); // a leftover temporary keeps its old mode through writeFileSync
  renameSync(temporary, file);
}

function privateFolder(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: PRIVATE_FOLDER });
  chmodSync(dir, PRIVATE_FOLDER); // folders made by an earlier version were 0755
}

export class DiskImageStore implements ImageStore {
  /** Put by a turn whose conversation is not saved yet: never collected meanwhile. */
  readonly unsaved = new Set<string>();
  /** Written by this process (the grace for other processes' images does not apply to them). */
  readonly written = new Set<string>();

  constructor(readonly dir: string) {}

  get(hash: string): Uint8Array | undefined {
    if (!IMAGE_HASH_PATTERN.test(hash)) return undefined;
    const file = entryInside(this.dir, hash);
    return existsSync(file) ? readFileSync(file) : undefined;
  }

  put(hash: string, bytes: Uint8Array): void {
    if (!IMAGE_HASH_PATTERN.test(hash)) throw new Error(`refused to store an image under ${JSON.stringify(hash.slice(0, 80))}: not a SHA-256 hash`);
    const file = entryInside(this.dir, hash);
    this.unsaved.add(hash);
    this.written.add(hash);
    if (!existsSync(file)) writePrivately(file, bytes);
  }
}

interface IndexEntry {
  /** Of the session's file when it was described: a file that differs was changed since. */
  mtimeMs: number;
  bytes: number;
  images: string[];
}

const IndexFile = z.object({
  version: z.literal(1),
  sessions: z.record(SessionId, z.object({ mtimeMs: z.number(), bytes: z.number().int().nonnegative(), images: z.array(ImageHash) })),
});

export class SessionStore {
  readonly images: DiskImageStore;
  /** Transcripts parsed since the store opened (start-up parses only those the index does not describe). */
  transcriptsParsed = 0;
  private readonly sessionsDir: string;
  private readonly indexFile: string;
  private readonly entries: Map<string, IndexEntry>;
  private imageFiles = new Map<string, { bytes: number; mtimeMs: number }>();
  /** Images some session showed since the store opened (no longer in flight anywhere). */
  private readonly imagesEverShown = new Set<string>();

  constructor(
    stateDir: string,
    private readonly log: Logger,
    private readonly retention: RetentionRules = DEFAULT_RETENTION,
  ) {
    this.sessionsDir = join(stateDir, 'sessions');
    const imagesDir = join(stateDir, 'images');
    privateFolder(stateDir);
    privateFolder(this.sessionsDir);
    privateFolder(imagesDir);
    this.indexFile = join(stateDir, 'index.json');
    this.images = new DiskImageStore(imagesDir);
    this.entries = this.readIndex();
    for (const entry of this.entries.values()) for (const hash of entry.images) this.imagesEverShown.add(hash);
    this.refresh();
  }

  /** Stored sessions (loaded or not). */
  get size(): number {
    return this.entries.size;
  }

  ids(): string[] {
    return [...this.entries.keys()];
  }

  has(id: string): boolean {
    return SESSION_ID_PATTERN.test(id) && this.entries.has(id);
  }

  save(conversation: Conversation): void {
    const data = conversation.toJSON();
    const file = this.sessionFile(conversation.id);
    writePrivately(file, JSON.stringify(data));
    const { mtimeMs, size } = statSync(file);
    this.describe(conversation.id, { mtimeMs, bytes: size, images: imagesOf(data) });
    this.writeIndex();
  }

  /**
   * The stored conversation `id`, parsed and checked. A damaged file is moved aside (`.corrupt`,
   * kept for inspection) with a warning, and the session is then unknown.
   */
  load(id: string): Conversation {
    const entry = this.entries.get(id);
    if (!entry || !SESSION_ID_PATTERN.test(id)) throw new SidecarError(ErrorCode.SessionNotFound, `no stored session ${JSON.stringify(id)}`);
    const file = this.sessionFile(id);
    if (!existsSync(file)) {
      // Removed by another sidecar sharing the folder: gone, not damaged.
      this.entries.delete(id);
      this.writeIndex();
      throw new SidecarError(ErrorCode.SessionNotFound, `the saved conversation ${id} was deleted`);
    }
    try {
      const conversation = Conversation.restore(this.parse(file, id), this.images);
      conversation.lastUsed = entry.mtimeMs;
      return conversation;
    } catch (error) {
      const reason = this.setAside(id, file, error);
      this.writeIndex();
      this.collectImages();
      throw new SidecarError(ErrorCode.SessionNotFound, `the saved conversation ${id} could not be read (${reason}); it was moved aside to ${basename(file)}.corrupt`);
    }
  }

  /** Removes a stored session and the images no other session shows; false (nothing touched) when there is none. */
  delete(id: string): boolean {
    if (!this.has(id)) return false;
    rmSync(this.sessionFile(id), { force: true });
    this.entries.delete(id);
    this.writeIndex();
    this.collectImages();
    return true;
  }

  /**
   * Applies the retention rules, least recently saved first, never to the sessions in `keep`;
   * then collects the images no session shows. Returns the ids removed. `rescan`: first bring the
   * index in line with the folder (another process may share it); the store just opened is.
   */
  enforceRetention(keep: ReadonlySet<string> = new Set(), { now = Date.now(), rescan = true } = {}): string[] {
    if (rescan) this.refresh();
    const { maxSessions, maxAgeDays, maxStateBytes } = this.retention;
    const oldestFirst = [...this.entries].sort((a, b) => a[1].mtimeMs - b[1].mtimeMs).map(([id]) => id);
    const removable = oldestFirst.filter((id) => !keep.has(id));
    const removed: string[] = [];
    const remove = (id: string) => {
      rmSync(this.sessionFile(id), { force: true });
      this.entries.delete(id);
      removed.push(id);
    };
    if (maxAgeDays > 0) for (const id of removable) if (now - this.entries.get(id)!.mtimeMs > maxAgeDays * DAY_MS) remove(id);
    if (maxSessions > 0) for (const id of removable.filter((i) => this.entries.has(i))) if (this.entries.size > maxSessions) remove(id);
    if (maxStateBytes > 0) for (const id of removable.filter((i) => this.entries.has(i))) if (this.stateBytes() > maxStateBytes) remove(id);
    if (removed.length) {
      this.writeIndex();
      this.log.log('info', 'old sessions removed by the retention rules', { removed: removed.length, kept: this.entries.size, ...this.retention });
    }
    this.collectImages();
    return removed;
  }

  /** Bytes the state folder keeps: the transcripts and the images they (or turns in flight) show. */
  stateBytes(): number {
    const shown = this.shownImages();
    let bytes = 0;
    for (const entry of this.entries.values()) bytes += entry.bytes;
    for (const [hash, file] of this.imageFiles) if (shown.has(hash)) bytes += file.bytes;
    return bytes;
  }

  /** Deletes the image files no stored session shows (a turn's unsaved images and recent foreign ones excepted). */
  collectImages(now = Date.now()): void {
    this.scanImages();
    const shown = this.shownImages();
    let collected = 0;
    for (const [hash, file] of this.imageFiles) {
      if (shown.has(hash)) continue;
      if (!this.images.written.has(hash) && !this.imagesEverShown.has(hash) && now - file.mtimeMs < FOREIGN_IMAGE_GRACE_MS) continue;
      rmSync(entryInside(this.images.dir, hash), { force: true });
      this.imageFiles.delete(hash);
      this.images.written.delete(hash);
      this.imagesEverShown.delete(hash);
      collected++;
    }
    if (collected) this.log.log('info', 'images no session shows were deleted', { images: collected });
  }

  private describe(id: string, entry: IndexEntry): void {
    this.entries.set(id, entry);
    for (const hash of entry.images) {
      this.images.unsaved.delete(hash);
      this.imagesEverShown.add(hash);
    }
  }

  private shownImages(): Set<string> {
    const shown = new Set(this.images.unsaved);
    for (const entry of this.entries.values()) for (const hash of entry.images) shown.add(hash);
    return shown;
  }

  private sessionFile(id: string): string {
    if (!SESSION_ID_PATTERN.test(id)) throw new Error(`refused a session file for ${JSON.stringify(id.slice(0, 200))}: not a session id`);
    return entryInside(this.sessionsDir, `${id}.json`);
  }

  private parse(file: string, id: string) {
    this.transcriptsParsed++;
    return parsePersisted(readFileSync(file, 'utf8'), id);
  }

  /** Moves a damaged session file aside (never deletes it), says so in the log, forgets the session. */
  private setAside(id: string, file: string, error: unknown): string {
    const reason = error instanceof Error ? error.message : String(error);
    this.entries.delete(id);
    try {
      renameSync(file, `${file}.corrupt`);
    } catch {
      // already gone (deleted meanwhile): nothing to keep
    }
    this.log.log('warn', 'persisted session skipped: its file is damaged; moved aside, the other sessions are unaffected', { file, movedTo: `${file}.corrupt`, error: reason.slice(0, 2000) });
    return reason.slice(0, 500);
  }

  private readIndex(): Map<string, IndexEntry> {
    if (!existsSync(this.indexFile)) return new Map();
    try {
      const parsed = IndexFile.parse(JSON.parse(readFileSync(this.indexFile, 'utf8')));
      return new Map(Object.entries(parsed.sessions));
    } catch (error) {
      this.log.log('warn', 'the session index is damaged; it is rebuilt from the session files', { file: this.indexFile, error: error instanceof Error ? error.message.slice(0, 500) : String(error) });
      return new Map();
    }
  }

  private writeIndex(): void {
    writePrivately(this.indexFile, JSON.stringify({ version: 1, sessions: Object.fromEntries(this.entries) }));
  }

  /**
   * Brings the index in line with the folder: files it does not describe (new, changed by another
   * process, damaged) are parsed, vanished ones forgotten, private modes restored, stale
   * temporaries removed. A listing and a `stat` per file; no transcript the index describes is read.
   */
  private refresh(): void {
    const now = Date.now();
    const present = new Set<string>();
    let changed = false;
    for (const name of readdirSync(this.sessionsDir)) {
      const path = entryInside(this.sessionsDir, name);
      const stat = statSync(path, { throwIfNoEntry: false });
      if (!stat?.isFile()) continue;
      if (TEMPORARY.test(name)) {
        if (staleTemporary(name, stat.mtimeMs, now)) rmSync(path, { force: true });
        continue;
      }
      const id = name.endsWith('.json') ? name.slice(0, -'.json'.length) : '';
      if (!SESSION_ID_PATTERN.test(id)) continue; // not ours (or set aside): left alone
      if (stat.mode & 0o077) chmodSync(path, PRIVATE_FILE);
      present.add(id);
      const known = this.entries.get(id);
      if (known && known.mtimeMs === stat.mtimeMs && known.bytes === stat.size) continue;
      changed = true;
      try {
        this.describe(id, { mtimeMs: stat.mtimeMs, bytes: stat.size, images: imagesOf(this.parse(path, id)) });
      } catch (error) {
        this.setAside(id, path, error);
      }
    }
    for (const id of this.entries.keys()) {
      if (present.has(id)) continue;
      this.entries.delete(id);
      changed = true;
    }
    if (changed || !existsSync(this.indexFile)) this.writeIndex();
    this.scanImages(now);
  }

  private scanImages(now = Date.now()): void {
    const files = new Map<string, { bytes: number; mtimeMs: number }>();
    for (const name of readdirSync(this.images.dir)) {
      const path = entryInside(this.images.dir, name);
      const stat = statSync(path, { throwIfNoEntry: false });
      if (!stat?.isFile()) continue;
      if (TEMPORARY.test(name)) {
        if (staleTemporary(name, stat.mtimeMs, now)) rmSync(path, { force: true });
        continue;
      }
      if (!IMAGE_HASH_PATTERN.test(name)) continue;
      if (stat.mode & 0o077) chmodSync(path, PRIVATE_FILE);
      files.set(name, { bytes: stat.size, mtimeMs: stat.mtimeMs });
    }
    this.imageFiles = files;
  }
}
