/**
 * `node --import tsx bench/stateStartup.ts [10 500]`: sidecar start-up time against the number of
 * stored sessions. For each count, a state folder of that many realistic conversations (3 turns,
 * 3,000 token ids, an image, ~20 KB of JSON each) is written, then `new SidecarServer(...)` plus
 * its first `server/stats` is timed: the first start (which may build the session index) and the
 * median of 5 starts after it. Retention is off so every session stays. Prints one line per count.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SidecarServer } from '../sidecar/src/server/server.js';

const TOKENS = 3000;
const silent = { log: () => undefined };

function conversation(id: string, seed: number): object {
  const ids = Array.from({ length: TOKENS }, (_, i) => (seed * 7919 + i * 104729) % 32000);
  const turn = { newTokens: 1000, generatedTokens: 60, tokensSeen: 1060, keptSlots: [212, 212], kvBytes: 1_000_000, fullKvBytes: 5_000_000, timeToFirstTokenMs: 300, prefillMs: 250, compressMs: 10, decodeMs: 900, imagesEncoded: 1, imagesReused: 0, rebuilt: false };
  const text = 'What does this screenshot show, and what is wrong with the layout? '.repeat(20);
  return {
    version: 1,
    id,
    settings: { policy: 'text_prior_pivot_merge', mode: 'improved', budget: { hhRatio: 0.1, recentRatio: 0.1 }, maxNewTokens: 512, temperature: 0, topK: 0, topP: 1, seed: 0 },
    messages: [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text }] }, { role: 'assistant', content: text }, { role: 'user', content: [{ type: 'text', text }] }, { role: 'assistant', content: text }],
    segments: [
      { ids: ids.slice(0, 1000), imageHashes: ['ab'.repeat(32)] },
      { ids: ids.slice(1000, 2000), imageHashes: [] },
      { ids: ids.slice(2000), imageHashes: [] },
    ],
    fedText: text.repeat(4),
    imageCount: 1,
    turns: [turn, turn, turn],
  };
}

function start(stateDir: string): number {
  const t = performance.now();
  const server = new SidecarServer({ host: '127.0.0.1', port: 0, token: 'x'.repeat(32), version: 'bench', log: silent, stateDir, retention: { maxSessions: 0, maxAgeDays: 0, maxStateBytes: 0 } });
  const sessions = server.stats().sessions;
  const ms = performance.now() - t;
  if (sessions === 0) throw new Error('no session was found');
  return ms;
}

const counts = process.argv.slice(2).map(Number);
for (const count of counts.length ? counts : [10, 500]) {
  const stateDir = mkdtempSync(join(tmpdir(), 'lookm-startup-'));
  try {
    mkdirSync(join(stateDir, 'sessions'), { recursive: true });
    mkdirSync(join(stateDir, 'images'), { recursive: true });
    writeFileSync(join(stateDir, 'images', 'ab'.repeat(32)), Buffer.alloc(50_000));
    let bytes = 0;
    for (let i = 0; i < count; i++) {
      const id = randomUUID();
      const json = JSON.stringify(conversation(id, i));
      bytes += json.length;
      writeFileSync(join(stateDir, 'sessions', `${id}.json`), json);
    }
    const first = start(stateDir);
    const again = Array.from({ length: 5 }, () => start(stateDir)).sort((a, b) => a - b);
    console.log(`${count} sessions (${(bytes / 2 ** 20).toFixed(1)} MiB of transcripts): first start ${first.toFixed(1)} ms, later starts median ${again[2].toFixed(1)} ms`);
  } finally {
    rmSync(stateDir, { recursive: true, force: true });
  }
}
