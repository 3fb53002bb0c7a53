/**
 * One conversation: its transcript, the exact token segments it fed the model, and its compressed
 * KV cache. A turn feeds only what is new: the chat template renders the whole conversation, and
 * the part after the text already in the cache is tokenized and prefilled on top of it (a template
 * that rewrites earlier turns makes the turn start over from the whole prompt). Images are
 * keyed by content hash; their features are computed once (see `FeatureCache`).
 *
 * The token segments make the cache reproducible: after an eviction or a restart, feeding them
 * again turn by turn, as the live turns did (prefill a prompt, compress, one decode step per
 * generated token), rebuilds the very cache the live turns built, whatever the policy.
 */
import { createHash } from 'node:crypto';
import { compressToCold, deferredBudget, deferredWindowScores, planCompression, POLICIES, resolveBudget, TEXT, type KvCache } from '../kv/index.js';
import type { ImageGrid } from '../model/imageGrid.js';
import type { DrawnPart } from '../model/imageGrid.js';
import type { ChatMessage, ContentPart } from '../model/processor.js';
import { SidecarError } from '../protocol/errors.js';
import { ErrorCode, type SessionSettings, type TurnStats } from '../protocol/index.js';
import type { ModelRuntime } from '../runtime/modelRuntime.js';
import { createSampler } from '../runtime/sampling.js';
import { CacheTally, cacheMap } from './cacheMap.js';
import { compressOptions, observedWindow } from './compression.js';
import { ReadingProgress } from './reading.js';
import { coldWork, createColdTier, lineEnds, recallFor, type ColdTier, type ColdWork } from './recall.js';

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

/**
 * What a conversation persists: enough to rebuild its cache exactly and to show its transcript.
 * `segments` alternate: each turn's prompt segment, then the tokens generated after it. The
 * format is unchanged by the turn-by-turn rebuild; `imageCount` is written for older readers
 * and derived from the segments on load.
 */
export interface PersistedConversation {
  version: 1;
  id: string;
  settings: SessionSettings;
  messages: ChatMessage[];
  segments: Segment[];
  fedText: string;
  imageCount: number;
  turns: TurnStats[];
  /**
   * The fingerprint of the model whose tokenizer and template made `segments` and `fedText`
   * (`ModelRuntime.fingerprint`). Absent in files saved before it was recorded: such a
   * conversation's model is unknown, so it is treated as another model's.
   */
  model?: string;
}

/** What was fed, in order: token ids, with the content hash of each image whose tokens are among them. */
interface Segment {
  ids: number[];
  imageHashes: string[];
}

/** One turn as fed: its prompt segment, then the tokens generated after it. */
interface FedTurn {
  prompt: Segment;
  generated: Segment;
}

/** Image features by content hash, with the grid each image was read at, shared by all conversations of one model. */
export class FeatureCache {
  private readonly features = new Map<string, { rows: Float32Array; grid?: ImageGrid }>();
  constructor(private readonly maxEntries = 256) {}

  get(hash: string): Float32Array | undefined {
    const hit = this.features.get(hash);
    if (hit) {
      this.features.delete(hash);
      this.features.set(hash, hit); // most recently used last
    }
    return hit?.rows;
  }

  /** The grid of a cached image (`ModelRuntime.imageGrids`'), if it was kept with its features. */
  grid(hash: string): ImageGrid | undefined {
    return this.features.get(hash)?.grid;
  }

  set(hash: string, value: Float32Array, grid?: ImageGrid): void {
    this.features.set(hash, { rows: value, grid });
    if (this.features.size > this.maxEntries) this.features.delete(this.features.keys().next().value!);
  }
}

/** Stands for an answer while rendering, to find where the template puts it. */
const ANSWER_MARK = '\u0000lookm-answer\u0000';

export function contentHash(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** What a turn feeds, worked out before anything changes (so a failing turn loses nothing). */
interface FeedPlan {
  content: ContentPart[];
  /** Feeds on top of the cached text; false when the template rewrote earlier turns (start over). */
  incremental: boolean;
  /** This turn's prompt segment: the suffix after the cached text, or the whole prompt. */
  fresh: Segment;
  /** Earlier turns to feed again first, because the cache was dropped. */
  replay: FedTurn[];
  /** This turn's images by content hash. */
  newImages: Map<string, Uint8Array>;
  /** The grid of every image the feed shows, by content hash (M-RoPE positions depend on it). */
  grids: Map<string, ImageGrid>;
}

/**
 * The cache and tally a turn changes: the conversation gets them back only when the turn is
 * recorded. `undo` takes the conversation's own cache back to before this turn's prefill; it is
 * null once the cache was compressed (that cannot be undone: the cache is then dropped).
 */
interface TurnWork {
  cache: KvCache;
  tally: CacheTally;
  previous: KvCache | null;
  undo: (() => void) | null;
  /** The cold tier this turn uses (null: off); it follows the work cache. */
  cold: ColdWork | null;
  /** Images in the work cache so far: the next image's index. */
  imagesFed: number;
  tokensFed: number;
  reading: ReadingProgress;
}

interface Decoded {
  generated: number[];
  text: string;
  stopReason: TurnOutput['stopReason'];
  firstTokenMs: number;
}

export class Conversation {
  readonly messages: ChatMessage[] = [];
  private readonly segments: Segment[] = [];
  /** The text the cache holds, as the template renders it (prompts) plus the answers' text. */
  private fedText = '';
  private cache: KvCache | null = null;
  /** What compression evicted from the cache, when the cold tier is on; follows the cache (dropped and rebuilt with it). */
  private cold: ColdTier | null = null;
  /** The running turn's caches (its work cache, and the one it may put back): counted until it ends. */
  private working: TurnWork | null = null;
  /** What the cache's positions are and what was merged (for the cache view); follows the cache. */
  private tally = new CacheTally();
  /** How the cache view draws each image (by content hash), where its architecture says (not saved: a restored conversation's images are drawn plainly until shown again). */
  private readonly drawings = new Map<string, readonly DrawnPart[]>();
  readonly turns: TurnStats[] = [];
  lastUsed = Date.now();
  /** The fingerprint of the model that made `segments` and `fedText`; null until a turn is recorded (or saved before it was kept). */
  private model: string | null = null;

  constructor(
    readonly id: string,
    readonly settings: SessionSettings,
    private readonly images: ImageStore = new MemoryImageStore(),
  ) {}

  toJSON(): PersistedConversation {
    return { version: 1, id: this.id, settings: this.settings, messages: this.messages, segments: this.segments, fedText: this.fedText, imageCount: this.imageCount, turns: this.turns, ...(this.model ? { model: this.model } : {}) };
  }

  /** A conversation from its persisted form, without a cache: its next turn rebuilds it. */
  static restore(data: PersistedConversation, images: ImageStore): Conversation {
    const c = new Conversation(data.id, data.settings, images);
    c.messages.push(...data.messages);
    c.segments.push(...data.segments);
    c.turns.push(...data.turns);
    c.fedText = data.fedText;
    c.model = data.model ?? null;
    return c;
  }

  /**
   * Whether the saved token ids were made by a model other than the one with `fingerprint` (or
   * by an unknown one): they mean nothing to it, so the next turn feeds the whole transcript
   * again as text, rendered and tokenized by the current model (messages, answers, files and
   * images as they were), instead of replaying them. Nothing is lost; the old ids are replaced
   * only when that turn is recorded.
   */
  madeByAnotherModel(fingerprint: string): boolean {
    return this.segments.length > 0 && this.model !== fingerprint;
  }

  /**
   * Refuses a conversation whose saved tokens this model cannot embed although this model made
   * them (a damaged state file): its replay would fail with a misleading error. One saved under
   * another model is not checked: it is rebuilt from its text (`madeByAnotherModel`).
   */
  checkTokenIds(vocabSize: number, imageTokenId: number | null): void {
    for (const segment of this.segments) {
      const bad = segment.ids.find((id) => (id >= vocabSize || id < 0 || !Number.isInteger(id)) && id !== imageTokenId);
      if (bad !== undefined) {
        throw new SidecarError(ErrorCode.TokenOutOfRange, `the saved conversation ${this.id} is corrupt (token id ${bad} outside the vocabulary of size ${vocabSize}); delete it (/clear in the chat, or "LOOK-M: Clear Conversation Cache") and start a new conversation`);
      }
    }
  }

  get cached(): boolean {
    return this.cache !== null;
  }

  /**
   * Bytes of KV storage this conversation holds (allocated, spare capacity included), a running
   * turn's caches included: what it costs the process, the figure the global budget enforces.
   */
  get kvBytes(): number {
    const work = this.working;
    if (!work) return this.cache?.allocatedBytes ?? 0;
    return work.cache.allocatedBytes + (work.previous && work.previous !== work.cache ? work.previous.allocatedBytes : 0);
  }

  get tokensSeen(): number {
    return this.segments.reduce((sum, s) => sum + s.ids.length, 0);
  }

  /** Images the cache's tokens show, counted from its start (the next image's index). */
  private get imageCount(): number {
    return this.segments.reduce((sum, s) => sum + s.imageHashes.length, 0);
  }

  /** Which positions the cache keeps per layer and head, what they are, what was merged. */
  cacheMap(maxColumns?: number): ReturnType<typeof cacheMap> {
    const hashes = this.segments.flatMap((segment) => segment.imageHashes);
    return cacheMap(this.cache?.layers ?? null, this.tally, maxColumns, (index) => this.drawings.get(hashes[index] ?? ''));
  }

  /** Bytes of the conversation's cold tier (host memory), a running turn's included. */
  get coldBytes(): number {
    return (this.working?.cold ?? this.cold)?.store.bytes ?? 0;
  }

  /**
   * Drops the oldest cold entries until the cold tier holds at most `maxBytes` (the global cold
   * budget); returns the bytes freed. What they held is still in the transcript.
   */
  trimCold(maxBytes: number): number {
    return this.cold?.store.trim(maxBytes) ?? 0;
  }

  /** Drops the KV cache and its cold tier; the transcript and segments stay, and the next turn rebuilds both. */
  evict(): void {
    this.cache?.release(); // rows on a GPU are not reclaimed by garbage collection
    this.cache = null;
    this.cold = null;
  }

  /**
   * One turn: feeds what is new (replaying the earlier turns first if the cache was dropped),
   * compresses, decodes and records. A turn that fails, or is cancelled before its first token,
   * records nothing (a cancel throws a RequestCancelled `SidecarError`); one cancelled while
   * decoding keeps its partial answer, as the user saw it stream. `onRead` follows the reading
   * (prefill chunks, a rebuild's replay included) as tokens read of all the turn reads.
   */
  async turn(
    runtime: ModelRuntime,
    features: FeatureCache,
    input: TurnInput,
    onToken: (text: string, id: number) => void,
    isCancelled: () => boolean,
    onCacheGrowth?: () => void,
    onRead?: (tokensRead: number, tokensTotal: number) => void,
  ): Promise<TurnOutput> {
    this.lastUsed = Date.now();
    const started = performance.now();
    this.refuseImagesOfTextOnly(runtime, input);
    const plan = await this.planFeed(runtime, input);
    const { rows, shown, encoded } = await this.ensureImageFeatures(runtime, features, plan);
    throwIfCancelled(isCancelled, 'before its prefill');
    const rebuilt = this.cache === null && this.segments.length > 0;
    const work = this.takeCache(runtime, plan, new ReadingProgress(tokensToRead(plan), runtime.prefillChunk, onRead ?? (() => undefined)));
    this.working = work;
    work.cache.onGrowth = onCacheGrowth ?? null;
    try {
      work.reading.start();
      for (const turn of plan.replay) await this.replayTurn(runtime, work, turn, rows, plan.grids, isCancelled);
      const prefilled = await this.prefillSegment(runtime, work, plan.fresh, rows, plan.grids, isCancelled);
      throwIfCancelled(isCancelled, 'after its prefill');
      const prefillMs = performance.now() - started;
      const compressStart = performance.now();
      await this.compress(runtime, work, prefilled.windowScores);
      let compressMs = performance.now() - compressStart;
      const decodeStart = performance.now();
      const decoded = await this.decode(runtime, work, prefilled.logits, input, onToken, isCancelled, started);
      const decodeMs = performance.now() - decodeStart;
      const backStart = performance.now();
      await this.compressBack(runtime, work, decoded.generated);
      compressMs += performance.now() - backStart;
      const stats: TurnStats = {
        newTokens: work.tokensFed,
        generatedTokens: decoded.generated.length,
        tokensSeen: work.cache.tokensSeen,
        keptSlots: work.cache.layers.map((layer) => layer.length),
        kvBytes: work.cache.allocatedBytes,
        keptKvBytes: work.cache.keptBytes,
        fullKvBytes: work.cache.fullBytes,
        timeToFirstTokenMs: decoded.firstTokenMs,
        prefillMs,
        compressMs,
        decodeMs,
        imagesEncoded: encoded,
        imagesReused: shown - encoded,
        rebuilt,
        ...(work.cold ? { coldBytes: work.cold.store.bytes, recalledSlots: work.cold.recalled, recallMs: work.cold.recallMs } : {}),
      };
      return { text: this.record(runtime, plan, work, decoded, stats), stopReason: decoded.stopReason, stats };
    } catch (error) {
      this.putBack(work);
      throw error;
    } finally {
      work.cache.onGrowth = null;
      this.working = null;
    }
  }

  /** A text-only model refuses a turn with images, and a conversation that already shows some (saved under a LLaVA model). */
  private refuseImagesOfTextOnly(runtime: ModelRuntime, input: TurnInput): void {
    runtime.refuseImages(input.images.length);
    if (!runtime.info.imageInput && this.imageCount > 0) {
      throw new SidecarError(
        ErrorCode.InvalidParams,
        `this model reads text only; the conversation ${this.id} holds ${this.imageCount} image(s) from a model that reads images: start a new conversation (/clear in the chat, or "LOOK-M: Clear Conversation Cache")`,
      );
    }
  }

  /**
   * What to feed: the new suffix on top of the cache (after replaying the earlier turns if the
   * cache was dropped), or, when the template rewrote earlier turns, the whole prompt from
   * scratch. Refuses a prompt over the context length before any work.
   */
  private async planFeed(runtime: ModelRuntime, input: TurnInput): Promise<FeedPlan> {
    const { processor } = runtime;
    const content: ContentPart[] = [...input.images.map(() => ({ type: 'image' as const })), { type: 'text', text: withFiles(input) }];
    const prompt = processor.renderChatTemplate([...this.messages, { role: 'user', content }]);
    const hashes = input.images.map(contentHash);
    const incremental = this.segments.length > 0 && !this.madeByAnotherModel(runtime.fingerprint) && prompt.text.startsWith(this.fedText);
    const before = incremental ? this.tokensSeen : 0;
    refuseTooManyCharacters(runtime, prompt.text.length - (incremental ? this.fedText.length : 0), before);
    const newImages = new Map(hashes.map((h, i) => [h, input.images[i]]));
    const imageHashes = incremental ? hashes : [...this.segments.flatMap((segment) => segment.imageHashes), ...hashes];
    // How each image of the encoded text enters the prompt (an Idefics3 image's tiles depend on its size).
    const grids = await runtime.imageGrids(imageHashes.map((hash) => () => this.imageBytes(newImages, hash)));
    grids.forEach((grid, i) => {
      if (grid.drawing) this.drawings.set(imageHashes[i], grid.drawing);
    });
    const fresh: Segment = { ids: processor.encode(prompt, !incremental, incremental ? this.fedText.length : 0, grids), imageHashes };
    refuseTooManyTokens(runtime, fresh.ids.length, before);
    const replay = incremental && this.cache === null ? fedTurns(this.segments) : [];
    return { content, incremental, fresh, replay, newImages, grids: new Map(imageHashes.map((hash, k) => [hash, grids[k]])) };
  }

  /** An image of this turn (`fresh`) or of an earlier one, by content hash. */
  private imageBytes(fresh: Map<string, Uint8Array>, hash: string): Uint8Array {
    const bytes = fresh.get(hash) ?? this.images.get(hash);
    if (!bytes) throw new Error(`image ${hash.slice(0, 12)} of an earlier turn is no longer available`);
    return bytes;
  }

  /** Features of every image the feed shows (`shown` times): from the shared cache, else encoded (and kept there). */
  private async ensureImageFeatures(runtime: ModelRuntime, features: FeatureCache, plan: FeedPlan): Promise<{ rows: Map<string, Float32Array>; shown: number; encoded: number }> {
    const rows = new Map<string, Float32Array>();
    const shown = [...plan.replay.flatMap((turn) => turn.prompt.imageHashes), ...plan.fresh.imageHashes];
    let encoded = 0;
    for (const hash of shown) {
      if (rows.has(hash)) continue;
      let f = features.get(hash);
      // A replayed turn's image: its grid as kept with its features, else read again from its header.
      const grid = plan.grids.get(hash) ?? features.grid(hash) ?? (await runtime.imageGrids([() => this.imageBytes(plan.newImages, hash)]))[0];
      plan.grids.set(hash, grid);
      if (!f) {
        f = await runtime.encodeImages([this.imageBytes(plan.newImages, hash)]);
        features.set(hash, f, grid);
        encoded++;
      }
      rows.set(hash, f);
    }
    for (const [hash, bytes] of plan.newImages) this.images.put(hash, bytes);
    return { rows, shown: shown.length, encoded };
  }

  /**
   * The cache this turn feeds: the resident one (an incremental turn), or a new one (after an
   * eviction, or when starting over). The conversation holds none until the turn is recorded.
   */
  private takeCache(runtime: ModelRuntime, plan: FeedPlan, reading: ReadingProgress): TurnWork {
    const previous = this.cache;
    this.cache = null;
    // The cold tier follows the cache: kept with it, new with a new one. It changes only once the
    // turn cannot be undone (a recall or a compression), so putting the cache back keeps it.
    const resident = plan.incremental && previous ? this.cold : null;
    const tier = resident ?? createColdTier(this.settings, runtime);
    const cold = tier ? coldWork(tier) : null;
    if (plan.incremental && previous) return { cache: previous, tally: this.tally.copy(), previous, undo: previous.mark(), cold, imagesFed: this.imageCount, tokensFed: 0, reading };
    return { cache: runtime.createCache(), tally: new CacheTally(), previous, undo: null, cold, imagesFed: 0, tokensFed: 0, reading };
  }

  /** After a turn that is not recorded: the cache as it was before the turn, or none (rebuilt exactly next turn). */
  private putBack(work: TurnWork): void {
    if (work.cache !== work.previous) {
      work.cache.release();
      this.cache = work.previous;
    } else if (work.undo) {
      work.undo();
      this.cache = work.previous;
    } else {
      work.cache.release();
      this.cold = null; // the cache is dropped: its cold tier goes with it
    }
  }

  /**
   * Feeds an earlier turn again exactly as it was fed live: prefill its prompt segment, compress,
   * then its generated tokens one decode step each. One prefill chunk for the generated tokens
   * is about 15 times faster (256 tokens on the embedded model: 30 ms against 0.4 s) but is not
   * the same computation: its K/V differ in rounding (up to 6e-6 measured), so the rebuilt cache
   * would not be bit-identical and a near tie in a policy's top-k or in a greedy answer could
   * turn. Decode steps make the rebuild exact by construction.
   */
  private async replayTurn(runtime: ModelRuntime, work: TurnWork, turn: FedTurn, rows: Map<string, Float32Array>, grids: Map<string, ImageGrid>, isCancelled: () => boolean): Promise<void> {
    const prefilled = await this.prefillSegment(runtime, work, turn.prompt, rows, grids, isCancelled);
    if (this.settings.policy === 'full') {
      // Nothing is ever evicted, so no choice can turn on rounding: one chunk rebuilds the same cache.
      await this.prefillSegment(runtime, work, turn.generated, rows, grids, isCancelled);
      return;
    }
    await this.compress(runtime, work, prefilled.windowScores);
    for (const token of turn.generated.ids) {
      throwIfCancelled(isCancelled, 'while rebuilding its cache');
      await runtime.decodeStep(work.cache, token, work.cache.tokensSeen);
      work.reading.advance(1);
    }
    work.tally.fed(new Array<number>(turn.generated.ids.length).fill(TEXT));
    work.tokensFed += turn.generated.ids.length;
    await this.compressBack(runtime, work, turn.generated.ids);
  }

  /** Prefills a prompt segment on top of the work cache, its images numbered from the cache's start. */
  private async prefillSegment(runtime: ModelRuntime, work: TurnWork, segment: Segment, rows: Map<string, Float32Array>, grids: Map<string, ImageGrid>, isCancelled: () => boolean) {
    const segmentRows = segment.imageHashes.map((hash) => rows.get(hash)!);
    const features = new Float32Array(segmentRows.reduce((n, r) => n + r.length, 0));
    segmentRows.reduce((offset, r) => (features.set(r, offset), offset + r.length), 0);
    const imageRows = segmentRows.map((r) => r.length / runtime.info.hiddenSize);
    const embedOptions = { grids: segment.imageHashes.map((hash) => grids.get(hash)!), ropeDelta: work.cache.ropeDelta };
    const { embeds, modality, positions, rope } = runtime.embedPrompt(segment.ids, features, work.cache.tokensSeen, imageRows, embedOptions);
    for (let i = 0; i < modality.length; i++) if (modality[i] !== TEXT) modality[i] += work.imagesFed;
    if (work.cold) {
      if (work.cold.store.count > 0) {
        work.undo = null; // the recall changes the cache and its cold tier: a failure from here drops both
        await recallFor(runtime, work.cache, work.cold, this.settings, embeds, positions, rope?.positions);
      }
      work.cold.spans.feed(modality, lineEnds(runtime.processor, segment.ids, modality));
    }
    work.imagesFed += segment.imageHashes.length;
    work.tally.fed(modality, rope?.positions);
    work.tokensFed += segment.ids.length;
    let read = 0;
    const onChunk = (done: number) => {
      work.reading.advance(done - read);
      read = done;
    };
    return runtime.prefill(work.cache, embeds, positions, modality, { windowRows: observedWindow(this.settings, runtime, work.cache, segment.ids.length), isCancelled, onChunk, ...(rope ? { rope } : {}) });
  }

  /** Compresses every layer under the session's policy; from here on the turn cannot be undone. */
  private async compress(runtime: ModelRuntime, work: TurnWork, windowScores: Float32Array[] | null): Promise<void> {
    if (this.settings.policy === 'full') {
      work.undo = null;
      return;
    }
    if (work.cold) {
      // With the cold tier the answer reads the prompt and the recalled spans whole; the turn
      // compresses at its end to what this compression would have kept (`compressBack`).
      const { budget, mode = 'improved' } = compressOptions(this.settings, runtime);
      work.cold.deferred = { budgets: work.cache.layers.map((layer) => resolveBudget(budget, layer.length, layer.tokensSeen, mode)), windowScores };
      return;
    }
    work.undo = null;
    const rows = work.cache.external;
    for (const [i, layer] of work.cache.layers.entries()) {
      // Rows on the device are matched and merged there; the CPU only selects, from the scores it holds.
      const options = { ...compressOptions(this.settings, runtime), windowScores: windowScores?.[i], ...(rows ? { matcher: rows.matcher(i), rowsElsewhere: true } : {}) };
      const plan = await planCompression(layer, options);
      if (!plan) continue;
      const rule = POLICIES[options.policy].merge;
      work.tally.compressed(layer, plan, rows ? { rule } : null);
      if (rows) await rows.compact(i, plan, rule ? { rule, mode: options.mode ?? 'improved' } : null);
      work.cache.compact(i, plan);
    }
  }

  /**
   * The end of a turn with the cold tier: the generated tokens get their recall spans, and every
   * layer is compressed to the length the turn would have had without the cold tier (the recalled
   * slots compete with the others; what loses goes to the cold tier).
   */
  private async compressBack(runtime: ModelRuntime, work: TurnWork, generated: readonly number[]): Promise<void> {
    const { cold } = work;
    if (!cold) return;
    const text = new Array<number>(generated.length).fill(TEXT);
    cold.spans.feed(text, lineEnds(runtime.processor, [...generated], text));
    const { deferred } = cold;
    cold.deferred = null;
    if (!deferred) return;
    work.undo = null;
    for (const [i, layer] of work.cache.layers.entries()) {
      const options = { ...compressOptions(this.settings, runtime), slots: deferredBudget(deferred.budgets[i], generated.length) };
      const windowScores = deferredWindowScores(layer, options, deferred.windowScores?.[i]);
      await compressToCold(layer, { ...options, windowScores }, cold.store.layers[i], cold.spans, (plan) => work.tally.compressed(layer, plan));
    }
  }

  /**
   * Samples (or takes the forced tokens), streaming each and feeding it back, until EOS, the
   * token limit or the context's end. Cancelled before the first token: throws (nothing to keep).
   */
  private async decode(runtime: ModelRuntime, work: TurnWork, firstLogits: Float32Array, input: TurnInput, onToken: (text: string, id: number) => void, isCancelled: () => boolean, started: number): Promise<Decoded> {
    const { processor } = runtime;
    const sample = createSampler(this.settings);
    const forced = input.forcedTokens;
    const room = runtime.contextLength - work.cache.tokensSeen;
    const limit = Math.min(forced ? forced.length : this.settings.maxNewTokens, room);
    const out: Decoded = { generated: [], text: '', stopReason: 'length', firstTokenMs: 0 };
    let logits = firstLogits;
    while (out.generated.length < limit) {
      if (isCancelled()) {
        if (out.generated.length === 0) throw cancelled('before its first token');
        out.stopReason = 'cancelled';
        break;
      }
      input.onLogits?.(logits, out.generated.length);
      const next = forced ? forced[out.generated.length] : sample(logits);
      if (processor.eosTokenIds.includes(next)) {
        out.stopReason = 'eos';
        break;
      }
      out.generated.push(next);
      const decoded = processor.decode(out.generated);
      if (out.generated.length === 1) out.firstTokenMs = performance.now() - started;
      // A token that ends inside a UTF-8 character decodes to U+FFFD: hold that character back
      // until its last byte arrives (the notification of this token carries no text then).
      const full = decoded.endsWith('\uFFFD') ? out.text : decoded;
      onToken(full.startsWith(out.text) ? full.slice(out.text.length) : full, next);
      out.text = full;
      // Every generated token is fed back (an EOS is never sampled into the cache), so the
      // segments stay exactly what the cache holds.
      logits = await runtime.decodeStep(work.cache, next, work.cache.tokensSeen);
    }
    work.tally.fed(new Array<number>(out.generated.length).fill(TEXT));
    return out;
  }

  /** The turn joins the conversation: segments, transcript, cache and stats. Returns the answer. */
  private record(runtime: ModelRuntime, plan: FeedPlan, work: TurnWork, decoded: Decoded, stats: TurnStats): string {
    const { processor } = runtime;
    if (!plan.incremental) this.segments.length = 0; // `fresh` holds everything, earlier images included
    this.model = runtime.fingerprint;
    this.segments.push(plan.fresh, { ids: decoded.generated, imageHashes: [] });
    if (work.previous && work.previous !== work.cache) work.previous.release();
    this.cache = work.cache;
    this.cold = work.cold && { store: work.cold.store, spans: work.cold.spans };
    this.tally = work.tally;
    const answer = decoded.text.replace(/^ /, '');
    // The answer in the processor's chat format, like the user's turn: llava-hf templates read
    // `message['content']` as typed parts (the processor renders it as the template takes it).
    this.messages.push({ role: 'user', content: plan.content }, { role: 'assistant', content: [{ type: 'text', text: answer }] });
    // The cache now holds the conversation as rendered up to the end of this answer (the template's
    // own spacing before it; the model's tokens for it). Whatever the template puts after an answer
    // (an end-of-turn token, separators) is fed with the next turn's suffix.
    const rendered = processor.applyChatTemplate([...this.messages.slice(0, -1), { role: 'assistant', content: [{ type: 'text', text: ANSWER_MARK }] }], false);
    const at = rendered.indexOf(ANSWER_MARK);
    this.fedText = at >= 0 ? rendered.slice(0, at) + answer : '\u0000'; // no mark: the next turn starts over
    this.turns.push(stats);
    return answer;
  }
}

/** The segments as turns: each prompt segment with the generated tokens after it. */
function fedTurns(segments: Segment[]): FedTurn[] {
  const turns: FedTurn[] = [];
  for (let i = 0; i < segments.length; i += 2) turns.push({ prompt: segments[i], generated: segments[i + 1] ?? { ids: [], imageHashes: [] } });
  return turns;
}

/** Every token a feed runs through the decoder: the replayed turns (prompts and answers), then the new prompt. */
function tokensToRead(plan: FeedPlan): number {
  return plan.replay.reduce((sum, turn) => sum + turn.prompt.ids.length + turn.generated.ids.length, 0) + plan.fresh.ids.length;
}

function cancelled(when: string): SidecarError {
  return new SidecarError(ErrorCode.RequestCancelled, `the turn was cancelled ${when}; nothing of it was kept`);
}

function throwIfCancelled(isCancelled: () => boolean, when: string): void {
  if (isCancelled()) throw cancelled(when);
}

/**
 * The new text cannot fit, whatever it tokenizes to: no token spells more than the longest
 * vocabulary entry. Checked before tokenizing, which takes long on a huge text; the factor 2
 * leaves room for normalizers that compose characters.
 */
function refuseTooManyCharacters(runtime: ModelRuntime, chars: number, before: number): void {
  const fewest = Math.ceil(chars / (2 * runtime.processor.longestTokenChars));
  if (fewest + before + 1 > runtime.contextLength) throw contextTooLong(runtime, `has ${chars} characters with its chat markup, at least ${fewest} tokens`, before);
}

/** The new prompt plus at least one answer token must fit the context after what the cache holds. */
function refuseTooManyTokens(runtime: ModelRuntime, tokens: number, before: number): void {
  if (tokens + before + 1 > runtime.contextLength) throw contextTooLong(runtime, `has ${tokens} tokens with its chat markup and images`, before);
}

function contextTooLong(runtime: ModelRuntime, size: string, before: number): SidecarError {
  const context = runtime.contextLength;
  const room = Math.max(0, context - before - 1);
  const held = before > 0 ? `the conversation already holds ${before} of the model's ${context}-token context, so ${room} fit` : `the model's context is ${context} tokens, so ${room} fit (one is kept for the answer)`;
  const advice = before > 0 ? 'start a new conversation, or send a shorter message with fewer images or files' : 'send a shorter message with fewer images or files';
  return new SidecarError(ErrorCode.ContextTooLong, `the message ${size}, but ${held}: ${advice}`);
}

/** The user's text with attached files in front, each fenced and named. */
function withFiles(input: TurnInput): string {
  const files = input.files.map((f) => `File ${f.name}:\n\`\`\`\n${f.text}\n\`\`\`\n`).join('\n');
  return files ? `${files}\n${input.text}` : input.text;
}
