/**
 * One conversation: its transcript, the exact token segments it fed the model, and its compressed
 * KV cache. A turn feeds only what is new: the chat template renders the whole conversation, and
 * the part after the text already in the cache is tokenized and prefilled on top of it (a template
 * that rewrites earlier turns makes the turn start over from the whole prompt). Images are
 * keyed by content hash; their features are computed once (see `FeatureCache`).
 *
 * The token segments make the cache reproducible: after an eviction or a restart, re-prefilling
 * them rebuilds the same cache the incremental turns built (same tokens, same positions).
 */
import { createHash } from 'node:crypto';
import { applyPlan, kvBytes, planCompression, TEXT, type KvLayer } from '../kv/index.js';
import type { ChatMessage, ContentPart } from '../model/processor.js';
import type { SessionSettings, TurnStats } from '../protocol/index.js';
import { releasePast, type LlavaRuntime } from '../runtime/llava.js';
import { createSampler } from '../runtime/sampling.js';
import { CacheTally, cacheMap } from './cacheMap.js';

export interface TurnInput {
  text: string;
  images: Uint8Array[];
  files: { name: string; text: string }[];
  /**
   * Teacher forcing (evaluation, scoring): these tokens are taken instead of sampled ones, and the
   * turn ends after them. Each step's logits still go to `onLogits`.
   */
  forcedTokens?: number[];
  onLogits?: (logits: Float32Array, step: number) => void;
}

export interface TurnOutput {
  text: string;
  stopReason: 'eos' | 'length' | 'cancelled';
  stats: TurnStats;
}

/** Image bytes by content hash: in memory, or on disk under the state directory. */
export interface ImageStore {
  get(hash: string): Uint8Array | undefined;
  put(hash: string, bytes: Uint8Array): void;
}

export class MemoryImageStore implements ImageStore {
  private readonly images = new Map<string, Uint8Array>();
  get(hash: string): Uint8Array | undefined {
    return this.images.get(hash);
  }
  put(hash: string, bytes: Uint8Array): void {
    this.images.set(hash, bytes);
  }
}

/** What a conversation persists: enough to rebuild its cache exactly and to show its transcript. */
export interface PersistedConversation {
  version: 1;
  id: string;
  settings: SessionSettings;
  messages: ChatMessage[];
  segments: Segment[];
  fedText: string;
  imageCount: number;
  turns: TurnStats[];
}

/** What was fed, in order: token ids, with the content hash of each image whose tokens are among them. */
interface Segment {
  ids: number[];
  imageHashes: string[];
}

/** Image features by content hash, shared by all conversations of one model. */
export class FeatureCache {
  private readonly features = new Map<string, Float32Array>();
  constructor(private readonly maxEntries = 256) {}

  get(hash: string): Float32Array | undefined {
    const hit = this.features.get(hash);
    if (hit) {
      this.features.delete(hash);
      this.features.set(hash, hit); // most recently used last
    }
    return hit;
  }

  set(hash: string, value: Float32Array): void {
    this.features.set(hash, value);
    if (this.features.size > this.maxEntries) this.features.delete(this.features.keys().next().value!);
  }
}

/** Stands for an answer while rendering, to find where the template puts it. */
const ANSWER_MARK = '\u0000lookm-answer\u0000';

export function contentHash(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export class Conversation {
  readonly messages: ChatMessage[] = [];
  private readonly segments: Segment[] = [];
  /** The text the cache holds, as the template renders it (prompts) plus the answers' text. */
  private fedText = '';
  private cache: KvLayer[] | null = null;
  /** What the cache's positions are and what was merged (for the cache view); follows the cache. */
  private readonly tally = new CacheTally();
  private imageCount = 0;
  readonly turns: TurnStats[] = [];
  lastUsed = Date.now();

  constructor(
    readonly id: string,
    readonly settings: SessionSettings,
    private readonly images: ImageStore = new MemoryImageStore(),
  ) {}

  toJSON(): PersistedConversation {
    return { version: 1, id: this.id, settings: this.settings, messages: this.messages, segments: this.segments, fedText: this.fedText, imageCount: this.imageCount, turns: this.turns };
  }

  /** A conversation from its persisted form, without a cache: its next turn rebuilds it. */
  static restore(data: PersistedConversation, images: ImageStore): Conversation {
    const c = new Conversation(data.id, data.settings, images);
    c.messages.push(...data.messages);
    c.segments.push(...data.segments);
    c.turns.push(...data.turns);
    c.fedText = data.fedText;
    c.imageCount = data.imageCount;
    return c;
  }

  get cached(): boolean {
    return this.cache !== null;
  }

  get kvBytes(): number {
    return this.cache?.reduce((sum, layer) => sum + kvBytes(layer), 0) ?? 0;
  }

  get tokensSeen(): number {
    return this.segments.reduce((sum, s) => sum + s.ids.length, 0);
  }

  /** Which positions the cache keeps per layer and head, what they are, what was merged. */
  cacheMap(maxColumns?: number): ReturnType<typeof cacheMap> {
    return cacheMap(this.cache, this.tally, maxColumns);
  }

  /** Drops the KV cache; the transcript and segments stay, and the next turn rebuilds it. */
  evict(): void {
    this.cache = null;
  }

  async turn(runtime: LlavaRuntime, features: FeatureCache, input: TurnInput, onToken: (text: string, id: number) => void, isCancelled: () => boolean): Promise<TurnOutput> {
    this.lastUsed = Date.now();
    const { processor } = runtime;
    const started = performance.now();
    const content: ContentPart[] = [...input.images.map(() => ({ type: 'image' as const })), { type: 'text', text: withFiles(input) }];
    const prompt = processor.applyChatTemplate([...this.messages, { role: 'user', content }]);
    const hashes = input.images.map(contentHash);

    // What to feed: the new suffix on top of the cache (after replaying the segments if the cache
    // was dropped), or, when the template rewrote earlier turns, the whole prompt from scratch.
    // Nothing is changed until the prefill starts, so a failing turn (a bad image) loses nothing.
    const rebuilt = this.cache === null && this.segments.length > 0;
    const incremental = this.segments.length > 0 && prompt.startsWith(this.fedText);
    const fresh: Segment = incremental
      ? { ids: processor.encode(prompt.slice(this.fedText.length), false), imageHashes: hashes }
      : { ids: processor.encode(prompt), imageHashes: [...this.segments.flatMap((segment) => segment.imageHashes), ...hashes] };
    const replay = incremental && this.cache === null ? this.segments : [];
    const imageBytes = new Map(hashes.map((h, i) => [h, input.images[i]]));
    const feed = [...replay, fresh];
    const imagesNeeded = feed.flatMap((s) => s.imageHashes);
    let encoded = 0;
    const rows: Float32Array[] = [];
    for (const hash of imagesNeeded) {
      let f = features.get(hash);
      if (!f) {
        const bytes = imageBytes.get(hash) ?? this.images.get(hash);
        if (!bytes) throw new Error(`image ${hash.slice(0, 12)} of an earlier turn is no longer available`);
        f = await runtime.vision.encode(await runtime.pixelValues([bytes]), 1);
        features.set(hash, f);
        encoded++;
      }
      rows.push(f);
    }
    for (const [hash, bytes] of imageBytes) this.images.put(hash, bytes);

    const ids = feed.flatMap((s) => s.ids);
    const allFeatures = new Float32Array(rows.reduce((n, r) => n + r.length, 0));
    rows.reduce((offset, r) => (allFeatures.set(r, offset), offset + r.length), 0);
    const { embeds, modality } = runtime.embedPrompt(ids, allFeatures);
    for (let i = 0; i < modality.length; i++) if (modality[i] >= 0) modality[i] += this.imageCount;
    this.imageCount += imagesNeeded.length;
    const reused = incremental ? this.cache : null;
    const cache = reused ?? runtime.createCache();
    // From here on the cache changes; if anything fails it is dropped and rebuilt next turn.
    this.cache = null;
    if (!reused) this.tally.reset();
    this.tally.fed(modality);
    const first = cache[0].tokensSeen;
    const positions = Int32Array.from(ids, (_, i) => first + i);
    const prefilled = await runtime.prefill(cache, embeds, positions, modality);
    const prefillMs = performance.now() - started;

    const compressStart = performance.now();
    const policy = this.settings.policy;
    if (policy !== 'full') {
      for (const [i, layer] of cache.entries()) {
        const plan = await planCompression(layer, { policy, budget: this.settings.budget, mode: this.settings.mode, numQueryHeads: runtime.config.text.numHeads, windowScores: prefilled.windowScores?.[i], seed: this.settings.seed, matcher: runtime.matcher });
        if (!plan) continue;
        this.tally.compressed(layer, plan);
        applyPlan(layer, plan);
      }
    }
    const compressMs = performance.now() - compressStart;
    if (!incremental) this.segments.length = 0; // `fresh` holds everything, earlier images included
    this.segments.push(fresh);
    this.fedText = prompt;
    this.messages.push({ role: 'user', content });

    // Decode, streaming; the answer (even a cancelled one) joins the transcript.
    const sample = createSampler(this.settings);
    const generated: number[] = [];
    let logits = prefilled.logits;
    let text = '';
    let stopReason: TurnOutput['stopReason'] = 'length';
    let firstTokenMs = 0;
    const decodeStart = performance.now();
    const forced = input.forcedTokens;
    const limit = forced ? forced.length : this.settings.maxNewTokens;
    while (generated.length < limit) {
      if (isCancelled()) {
        stopReason = 'cancelled';
        break;
      }
      input.onLogits?.(logits, generated.length);
      const next = forced ? forced[generated.length] : sample(logits);
      if (processor.eosTokenIds.includes(next)) {
        stopReason = 'eos';
        break;
      }
      generated.push(next);
      const decoded = processor.decode(generated);
      if (generated.length === 1) firstTokenMs = performance.now() - started;
      // A token that ends inside a UTF-8 character decodes to U+FFFD: hold that character back
      // until its last byte arrives (the notification of this token carries no text then).
      const full = decoded.endsWith('\uFFFD') ? text : decoded;
      onToken(full.startsWith(text) ? full.slice(text.length) : full, next);
      text = full;
      logits = await runtime.decodeStep(cache, next, positions[positions.length - 1] + generated.length);
    }
    this.tally.fed(new Array<number>(generated.length).fill(TEXT));
    // Every generated token was fed back (an EOS is never sampled into the cache), so the segments
    // stay exactly what the cache holds.
    this.segments.push({ ids: generated, imageHashes: [] });
    this.cache = cache;
    releasePast(cache); // between turns a session holds its KV and nothing else
    const answer = text.replace(/^ /, '');
    this.messages.push({ role: 'assistant', content: answer });
    // The cache now holds the conversation as rendered up to the end of this answer (the template's
    // own spacing before it; the model's tokens for it). Whatever the template puts after an answer
    // (an end-of-turn token, separators) is fed with the next turn's suffix.
    const rendered = processor.applyChatTemplate([...this.messages.slice(0, -1), { role: 'assistant', content: ANSWER_MARK }], false);
    const at = rendered.indexOf(ANSWER_MARK);
    this.fedText = at >= 0 ? rendered.slice(0, at) + answer : '\u0000'; // no mark: the next turn starts over

    const kept = cache.map((layer) => layer.length);
    const stats: TurnStats = {
      newTokens: ids.length,
      generatedTokens: generated.length,
      tokensSeen: cache[0].tokensSeen,
      keptSlots: kept,
      kvBytes: this.kvBytes,
      fullKvBytes: kvBytes({ ...cache[0], length: cache[0].tokensSeen }) * cache.length,
      timeToFirstTokenMs: firstTokenMs,
      prefillMs,
      compressMs,
      decodeMs: performance.now() - decodeStart,
      imagesEncoded: encoded,
      imagesReused: imagesNeeded.length - encoded,
      rebuilt,
    };
    this.turns.push(stats);
    return { text: answer, stopReason, stats };
  }
}

/** The user's text with attached files in front, each fenced and named. */
function withFiles(input: TurnInput): string {
  const files = input.files.map((f) => `File ${f.name}:\n\`\`\`\n${f.text}\n\`\`\`\n`).join('\n');
  return files ? `${files}\n${input.text}` : input.text;
}
