/** The state folder in process: paths kept inside, private modes, lazy start-up, damaged files, retention, image collection. */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { ErrorCode } from '../../sidecar/src/protocol/index.js';
import { SidecarError } from '../../sidecar/src/protocol/errors.js';
import type { Logger } from '../../sidecar/src/log.js';
import { contentHash, Conversation, type PersistedConversation } from '../../sidecar/src/session/conversation.js';
import { entryInside, SessionStore, type RetentionRules } from '../../sidecar/src/session/store.js';

const NO_LIMITS: RetentionRules = { maxSessions: 0, maxAgeDays: 0, maxStateBytes: 0 };
const DAY = 86_400_000;

function recorder(): Logger & { lines: { level: string; message: string; fields: Record<string, unknown> }[] } {
  const lines: { level: string; message: string; fields: Record<string, unknown> }[] = [];
  return { lines, log: (level, message, fields = {}) => void lines.push({ level, message, fields }) };
}

function persisted(id: string, ids: number[] = [1, 2, 3], images: string[] = []): PersistedConversation {
  return {
    version: 1,
    id,
    settings: { policy: 'full', mode: 'improved', budget: { hhRatio: 0.1, recentRatio: 0.1 }, maxNewTokens: 8, temperature: 0, topK: 0, topP: 1, seed: 0 },
    messages: [
      { role: 'user', content: [...images.map(() => ({ type: 'image' as const })), { type: 'text', text: 'What is this?' }] },
      { role: 'assistant', content: 'A square.' },
    ],
    segments: [
      { ids, imageHashes: images },
      { ids: [4, 5], imageHashes: [] },
    ],
    fedText: 'What is this? A square.',
    imageCount: images.length,
    turns: [],
  };
}

const mode = (path: string) => statSync(path).mode & 0o777;

describe('session store', () => {
  let root: string;
  let stateDir: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'lookm-store-'));
    stateDir = join(root, 'state');
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  /** A store with `count` saved sessions, each with its own image, saved one millisecond apart in age order. */
  function seeded(count: number): { ids: string[]; images: string[] } {
    const store = new SessionStore(stateDir, recorder(), NO_LIMITS);
    const ids: string[] = [];
    const images: string[] = [];
    for (let i = 0; i < count; i++) {
      const bytes = Buffer.from(`image ${i}`.repeat(100));
      const hash = contentHash(bytes);
      store.images.put(hash, bytes);
      const id = randomUUID();
      store.save(Conversation.restore(persisted(id, [1, 2, 3], [hash]), store.images));
      ids.push(id);
      images.push(hash);
    }
    // Oldest first: i days ago for the last, count days ago for the first.
    ids.forEach((id, i) => {
      const when = new Date(Date.now() - (count - i) * DAY);
      utimesSync(join(stateDir, 'sessions', `${id}.json`), when, when);
    });
    new SessionStore(stateDir, recorder(), NO_LIMITS); // the index learns the new times
    return { ids, images };
  }

  it('removes the temporary files of a writer that died between write and rename, keeps live ones', () => {
    new SessionStore(stateDir, recorder(), NO_LIMITS);
    const dead = join(stateDir, 'sessions', `${randomUUID()}.json.999999999.tmp`); // no such pid
    const live = join(stateDir, 'sessions', `${randomUUID()}.json.${process.ppid}.tmp`);
    const deadImage = join(stateDir, 'images', `${'a'.repeat(64)}.999999999.tmp`);
    for (const file of [dead, live, deadImage]) writeFileSync(file, '{"half": ');
    new SessionStore(stateDir, recorder(), NO_LIMITS);
    assert.equal(existsSync(dead), false);
    assert.equal(existsSync(deadImage), false);
    assert.equal(existsSync(live), true, 'a running process may still rename it');
  });

  it('resolves names only directly inside its folders; ids and hashes from outside never reach a file', () => {
    const canary = join(root, 'canary.json');
    writeFileSync(canary, '{}');
    const store = new SessionStore(stateDir, recorder());
    const hostile = ['../../canary', join(root, 'canary'), 'a/b', 'x'.repeat(100), '../state/index'];
    for (const id of hostile) {
      try {
        store.delete(id);
      } catch {
        // refusing by throwing would do too; what matters is the canary
      }
    }
    assert.ok(existsSync(canary), 'deleting hostile ids never reaches the canary next to the state folder');
    for (const name of ['../x', '/etc/passwd', 'a/b', '..', '.', '', `x/../../canary.json`]) {
      assert.throws(() => entryInside(join(stateDir, 'sessions'), name), /refused a path outside/, name);
    }
    assert.equal(entryInside(join(stateDir, 'sessions'), 'ok.json'), join(stateDir, 'sessions', 'ok.json'));
    for (const id of hostile) {
      assert.equal(store.delete(id), false, id);
      assert.equal(store.has(id), false, id);
      assert.throws(() => store.load(id), (e: unknown) => e instanceof SidecarError && e.code === ErrorCode.SessionNotFound);
      assert.equal(store.images.get(`../../${id}`), undefined);
      assert.throws(() => store.images.put(id, Buffer.from('x')), /not a SHA-256 hash/);
    }
    assert.throws(() => store.images.put(`../${'a'.repeat(61)}`, Buffer.from('x')), /not a SHA-256 hash/);
    assert.equal(readFileSync(canary, 'utf8'), '{}', 'the canary next to the state folder survives');
    assert.deepEqual(readdirSync(root).sort(), ['canary.json', 'state']);
    assert.deepEqual(readdirSync(join(stateDir, 'images')), []);
  });

  it('writes files 0600 and folders 0700, and makes those of an earlier version private on open', { skip: process.platform === 'win32' && 'POSIX modes' }, () => {
    mkdirSync(join(stateDir, 'sessions'), { recursive: true, mode: 0o755 });
    mkdirSync(join(stateDir, 'images'), { mode: 0o755 });
    chmodSync(stateDir, 0o755);
    const old = randomUUID();
    writeFileSync(join(stateDir, 'sessions', `${old}.json`), JSON.stringify(persisted(old)), { mode: 0o644 });
    const oldImage = 'c'.repeat(64);
    writeFileSync(join(stateDir, 'images', oldImage), 'x', { mode: 0o644 });
    const store = new SessionStore(stateDir, recorder());
    for (const dir of [stateDir, join(stateDir, 'sessions'), join(stateDir, 'images')]) assert.equal(mode(dir), 0o700, dir);
    assert.equal(mode(join(stateDir, 'sessions', `${old}.json`)), 0o600);
    assert.equal(mode(join(stateDir, 'images', oldImage)), 0o600);
    const fresh = randomUUID();
    const bytes = Buffer.from('png');
    store.images.put(contentHash(bytes), bytes);
    store.save(Conversation.restore(persisted(fresh, [1], [contentHash(bytes)]), store.images));
    assert.equal(mode(join(stateDir, 'sessions', `${fresh}.json`)), 0o600);
    assert.equal(mode(join(stateDir, 'images', contentHash(bytes))), 0o600);
    assert.equal(mode(join(stateDir, 'index.json')), 0o600);
  });

  it('starts without parsing a transcript with 500 stored sessions, and reads one on first use', () => {
    const { ids } = seeded(500);
    const store = new SessionStore(stateDir, recorder(), NO_LIMITS);
    assert.equal(store.size, 500);
    store.enforceRetention(new Set(), { rescan: true });
    assert.equal(store.transcriptsParsed, 0, 'start-up and a rescan read the index and the listing only');
    const conversation = store.load(ids[123]);
    assert.deepEqual([conversation.id, conversation.messages.length, conversation.tokensSeen], [ids[123], 2, 5]);
    assert.equal(store.transcriptsParsed, 1);
    rmSync(join(stateDir, 'sessions', `${ids[7]}.json`)); // another sidecar sharing the folder removed it
    assert.throws(() => store.load(ids[7]), (e: unknown) => e instanceof SidecarError && e.code === ErrorCode.SessionNotFound && /was deleted/.test(e.message));
    assert.equal(store.size, 499);
  });

  it('rebuilds a missing or damaged index from the files, once', () => {
    seeded(5);
    rmSync(join(stateDir, 'index.json'));
    const rebuilt = new SessionStore(stateDir, recorder(), NO_LIMITS);
    assert.deepEqual([rebuilt.size, rebuilt.transcriptsParsed], [5, 5]);
    writeFileSync(join(stateDir, 'index.json'), '{"version": 1, "sess');
    const log = recorder();
    const again = new SessionStore(stateDir, log, NO_LIMITS);
    assert.deepEqual([again.size, again.transcriptsParsed], [5, 5]);
    assert.ok(log.lines.some((l) => l.level === 'warn' && /index is damaged/.test(l.message)));
    assert.equal(new SessionStore(stateDir, recorder(), NO_LIMITS).transcriptsParsed, 0);
  });

  it('skips a truncated or invalid file with a warning naming it, moves it aside, and keeps the others', () => {
    const { ids } = seeded(5);
    const file = (id: string) => join(stateDir, 'sessions', `${id}.json`);
    const text = readFileSync(file(ids[0]), 'utf8');
    writeFileSync(file(ids[0]), text.slice(0, text.length / 2)); // truncated
    const negative = persisted(ids[1]);
    negative.segments[0].ids = [1, -7, 3];
    writeFileSync(file(ids[1]), JSON.stringify(negative)); // well-formed JSON, invalid content
    writeFileSync(file(ids[2]), JSON.stringify(persisted(ids[3]))); // someone else's conversation
    const log = recorder();
    const store = new SessionStore(stateDir, log, NO_LIMITS);
    assert.equal(store.size, 2);
    for (const bad of ids.slice(0, 3)) {
      assert.ok(existsSync(`${file(bad)}.corrupt`), 'moved aside, not deleted');
      assert.ok(!existsSync(file(bad)));
      assert.ok(log.lines.some((l) => l.level === 'warn' && l.fields.file === file(bad)), `a warning names ${bad}`);
      assert.throws(() => store.load(bad), (e: unknown) => e instanceof SidecarError && e.code === ErrorCode.SessionNotFound);
    }
    assert.match(String(log.lines.find((l) => l.fields.file === file(ids[1]))?.fields.error), /segments/);
    assert.match(String(log.lines.find((l) => l.fields.file === file(ids[2]))?.fields.error), /not .* as its name says/);
    for (const good of ids.slice(3)) assert.equal(store.load(good).id, good);
  });

  it('a file damaged behind the index (same size and time) is refused on first use, with a warning, and set aside', () => {
    const { ids } = seeded(2);
    const file = join(stateDir, 'sessions', `${ids[0]}.json`);
    const { size, atime, mtime } = statSync(file);
    writeFileSync(file, 'x'.repeat(size));
    utimesSync(file, atime, mtime);
    const log = recorder();
    const store = new SessionStore(stateDir, log, NO_LIMITS);
    assert.equal(store.size, 2);
    assert.throws(
      () => store.load(ids[0]),
      (e: unknown) => e instanceof SidecarError && e.code === ErrorCode.SessionNotFound && /could not be read .*moved aside/.test(e.message),
    );
    assert.ok(log.lines.some((l) => l.level === 'warn' && l.fields.file === file));
    assert.ok(existsSync(`${file}.corrupt`));
    assert.equal(store.size, 1);
    assert.equal(store.load(ids[1]).id, ids[1]);
  });

  it('deleting a session deletes the images no other session shows', () => {
    const store = new SessionStore(stateDir, recorder(), NO_LIMITS);
    const shared = Buffer.from('shared image');
    const own = Buffer.from('own image');
    for (const bytes of [shared, own]) store.images.put(contentHash(bytes), bytes);
    const [a, b] = [randomUUID(), randomUUID()];
    store.save(Conversation.restore(persisted(a, [1], [contentHash(shared), contentHash(own)]), store.images));
    store.save(Conversation.restore(persisted(b, [1], [contentHash(shared)]), store.images));
    const images = () => readdirSync(join(stateDir, 'images')).sort();
    assert.equal(store.delete(a), true);
    assert.deepEqual(images(), [contentHash(shared)]);
    assert.equal(store.delete(a), false);
    assert.equal(store.delete(b), true);
    assert.deepEqual(images(), []);
  });

  it('keeps a turn in flight\'s unsaved image, and images another process wrote within the hour', () => {
    const store = new SessionStore(stateDir, recorder(), NO_LIMITS);
    const inFlight = Buffer.from('in flight');
    store.images.put(contentHash(inFlight), inFlight);
    const foreign = 'f'.repeat(64);
    const orphan = 'e'.repeat(64);
    writeFileSync(join(stateDir, 'images', foreign), 'x');
    writeFileSync(join(stateDir, 'images', orphan), 'y');
    const old = new Date(Date.now() - 2 * 3_600_000);
    utimesSync(join(stateDir, 'images', orphan), old, old);
    store.collectImages();
    assert.deepEqual(readdirSync(join(stateDir, 'images')).sort(), [contentHash(inFlight), foreign].sort());
  });

  it('collects at start-up the images no session shows', () => {
    const { images } = seeded(2);
    const orphan = 'd'.repeat(64);
    writeFileSync(join(stateDir, 'images', orphan), 'left by a crashed turn');
    const old = new Date(Date.now() - 2 * 3_600_000);
    utimesSync(join(stateDir, 'images', orphan), old, old);
    new SessionStore(stateDir, recorder(), NO_LIMITS).enforceRetention(new Set(), { rescan: false });
    assert.deepEqual(readdirSync(join(stateDir, 'images')).sort(), [...images].sort());
  });

  it('retention by count removes the least recently used first, never a kept one, and their images', () => {
    const { ids, images } = seeded(5);
    const store = new SessionStore(stateDir, recorder(), { ...NO_LIMITS, maxSessions: 2 });
    const removed = store.enforceRetention(new Set([ids[0]]));
    assert.deepEqual(removed, ids.slice(1, 4));
    assert.deepEqual(store.ids().sort(), [ids[0], ids[4]].sort());
    assert.deepEqual(readdirSync(join(stateDir, 'images')).sort(), [images[0], images[4]].sort());
    assert.deepEqual(readdirSync(join(stateDir, 'sessions')).sort(), [`${ids[0]}.json`, `${ids[4]}.json`].sort());
  });

  it('retention by age removes the sessions unused for longer than the limit', () => {
    const { ids } = seeded(5); // used 5, 4, 3, 2 and 1 days ago
    const store = new SessionStore(stateDir, recorder(), { ...NO_LIMITS, maxAgeDays: 2.5 });
    assert.deepEqual(store.enforceRetention(), ids.slice(0, 3));
    assert.deepEqual(store.ids().sort(), ids.slice(3).sort());
  });

  it('retention by bytes removes the oldest until the transcripts and their images fit', () => {
    const { ids } = seeded(5);
    const probe = new SessionStore(stateDir, recorder(), NO_LIMITS);
    const total = probe.stateBytes();
    const store = new SessionStore(stateDir, recorder(), { ...NO_LIMITS, maxStateBytes: Math.floor(total * 0.5) });
    const removed = store.enforceRetention();
    assert.deepEqual(removed, ids.slice(0, 3));
    assert.ok(store.stateBytes() <= total * 0.5);
    const onDisk = ['sessions', 'images'].flatMap((dir) => readdirSync(join(stateDir, dir)).map((n) => statSync(join(stateDir, dir, n)).size)).reduce((a, b) => a + b, 0);
    assert.equal(onDisk, store.stateBytes(), 'what it counts is what is on disk');
  });

  it('refuses saved token ids outside the vocabulary, naming the conversation', () => {
    const id = randomUUID();
    const conversation = Conversation.restore(persisted(id, [1, 99_999, 3]), new SessionStore(stateDir, recorder()).images);
    assert.throws(
      () => conversation.checkTokenIds(416, 399),
      (e: unknown) => e instanceof SidecarError && e.code === ErrorCode.TokenOutOfRange && e.message.includes(id) && /token id 99999 outside the vocabulary of size 416/.test(e.message),
    );
    Conversation.restore(persisted(id, [1, 399, 415]), new SessionStore(stateDir, recorder()).images).checkTokenIds(416, 399);
  });
});
