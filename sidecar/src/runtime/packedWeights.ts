/**
 * The weights of a graph prepared once, as its session reads them, and mapped by later loads.
 *
 * Creating a CPU session from a checkpoint's float32 weights prepacks every projection into the
 * layout of onnxruntime's GEMM kernels: about 2 GB of freshly written memory for a 0.5B model, most
 * of a load, and on a VM whose first touch of fresh memory is slow, 2.5-7 s for the same load
 * (bench/README.md, "Why the load varies"). onnxruntime's own saved prepacking does not avoid it: a
 * load from it packs every weight again to find its saved copy by the packed bytes' hash.
 *
 * Instead the decoder's weights are laid out for onnxruntime's unpacked one-row kernels
 * (`gemmWeight`: some transposed), which decode as fast as the packed ones, and written once in
 * that layout (F16/BF16 widened, 8-/4-bit quantized: whatever the session reads) into an entry
 * here; a later load creates the session from the entry's graph, onnxruntime maps the weights file,
 * and with prepacking off a load writes almost nothing. The page cache holds the weights, as it
 * holds llama.cpp's.
 *
 * An entry is a folder named by a hash of everything its bytes depend on (the graph, which names
 * each tensor and its place in the file; each source file's path, size and modification time; the
 * format), written under a temporary name and renamed when complete; it takes the prepared
 * weights' bytes on disk (about the checkpoint's float32 size). The least recently used entries go
 * to keep the folder within its budget. A load that cannot read an entry removes it and prepares it
 * again; one that cannot write an entry loads the prepared weights from memory.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';

const MODEL = 'model.onnx';
/** Written last: an entry without it is incomplete (a load that died while writing it). */
const COMPLETE = 'complete';
/** Changes when what an entry holds changes, so older entries are not read as this one. */
const FORMAT = 'prepared-weights-1';

export type PackedWeightsEvent =
  | { event: 'hit'; entry: string }
  | { event: 'saving'; entry: string; bytes: number }
  | { event: 'saved'; entry: string; bytes: number }
  | { event: 'skipped'; reason: string }
  | { event: 'discarded'; entry: string; reason: string };

/** A graph, the checkpoint files its weights come from, and how its weights are written. */
export interface CacheableGraph {
  /** The graph, its external data in one file named by `weightsFile` at the offsets it gives. */
  model: Uint8Array;
  /** The file name the graph's external data names. */
  weightsFile: string;
  /** The files the weights are read from (their paths, sizes and modification times are in the key). */
  sources: readonly string[];
  /** Bytes of the weights file: the budget check before writing. */
  weightBytes: number;
  /** Writes the weights file at `path`, every byte on the disk when it returns. */
  writeWeights(path: string): void;
  /** The session's entries when there is no entry to map (weights handed over in memory). */
  inMemory(): ort.InferenceSession.SessionOptions;
}

export class PackedWeightsCache {
  constructor(
    readonly dir: string,
    /** Most bytes the entries may take on disk together (0: the cache is off). */
    readonly budgetBytes: number,
    private readonly onEvent: (event: PackedWeightsEvent) => void = () => undefined,
  ) {}

  /** Whether entries may be written at all (a budget above 0). */
  get enabled(): boolean {
    return this.budgetBytes > 0;
  }

  /**
   * A session for `graph` created with `options` from its entry, written first when there is none
   * and it fits the budget; otherwise from the weights in memory.
   */
  async createSession(graph: CacheableGraph, options: ort.InferenceSession.SessionOptions): Promise<ort.InferenceSession> {
    const fromMemory = () => ort.InferenceSession.create(graph.model, { ...options, ...graph.inMemory() });
    if (!this.enabled) return fromMemory();
    const key = this.keyOf(graph);
    const entry = join(this.dir, key);
    if (existsSync(join(entry, COMPLETE))) {
      try {
        const session = await ort.InferenceSession.create(join(entry, MODEL), options);
        touch(entry);
        this.onEvent({ event: 'hit', entry });
        return session;
      } catch (error) {
        this.discard(entry, `onnxruntime could not load it (${message(error)})`);
      }
    }
    if (graph.weightBytes > this.budgetBytes) {
      this.onEvent({ event: 'skipped', reason: `the prepared weights would take about ${mib(graph.weightBytes)} MiB, over the cache's ${mib(this.budgetBytes)} MiB` });
      return fromMemory();
    }
    const partial = join(this.dir, `${key}.partial-${process.pid}`);
    this.onEvent({ event: 'saving', entry, bytes: graph.weightBytes });
    try {
      mkdirSync(partial, { recursive: true });
      graph.writeWeights(join(partial, graph.weightsFile));
      writeFileSync(join(partial, MODEL), graph.model);
      writeFileSync(join(partial, COMPLETE), FORMAT);
      const bytes = folderBytes(partial);
      this.makeRoom(bytes, key);
      renameSync(partial, entry);
      this.onEvent({ event: 'saved', entry, bytes });
    } catch (error) {
      remove(partial);
      // Another load of the same graph kept its entry first: map that one.
      if (!existsSync(join(entry, COMPLETE))) {
        // The disk is full, the folder is read-only...: load as if there were no cache.
        this.onEvent({ event: 'skipped', reason: `could not keep the prepared weights: ${message(error)}` });
        return fromMemory();
      }
    }
    return ort.InferenceSession.create(join(entry, MODEL), options);
  }

  /** What an entry's bytes depend on. */
  private keyOf(graph: CacheableGraph): string {
    const hash = createHash('sha256');
    hash.update(FORMAT);
    hash.update(graph.model);
    for (const file of [...graph.sources].sort()) {
      const { size, mtimeMs } = statSync(file);
      hash.update(`\0${file}\0${size}\0${mtimeMs}`);
    }
    return hash.digest('hex').slice(0, 32);
  }

  /** Removes the least recently used entries (never `keep`) until `bytes` more fit in the budget. */
  private makeRoom(bytes: number, keep: string): void {
    this.removeLeftovers();
    const entries = readdirSync(this.dir, { withFileTypes: true })
      .filter((d) => d.isDirectory() && d.name !== keep && !d.name.includes('.partial-'))
      .map((d) => ({ path: join(this.dir, d.name), bytes: folderBytes(join(this.dir, d.name)), used: statSync(join(this.dir, d.name)).mtimeMs }))
      .sort((a, b) => a.used - b.used);
    let total = entries.reduce((sum, e) => sum + e.bytes, 0);
    for (const e of entries) {
      if (total + bytes <= this.budgetBytes) break;
      this.discard(e.path, 'least recently used, over the budget');
      total -= e.bytes;
    }
  }

  /** Entries (and markers) an older version wrote, never read since the format is in the key, and folders left half-written by a process that died. */
  private removeLeftovers(): void {
    for (const d of readdirSync(this.dir, { withFileTypes: true })) {
      const path = join(this.dir, d.name);
      const writer = /\.partial-(\d+)$/.exec(d.name);
      if (writer) {
        if (!isRunning(Number(writer[1]))) remove(path);
      } else if (d.name.endsWith('.refused')) {
        remove(path); // an older version's marker
      } else if (d.isDirectory() && existsSync(join(path, COMPLETE)) && readFileSync(join(path, COMPLETE), 'utf8') !== FORMAT) {
        this.discard(path, 'written by an older version');
      }
    }
  }

  private discard(entry: string, reason: string): void {
    remove(entry);
    this.onEvent({ event: 'discarded', entry, reason });
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: running, as another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Marks an entry most recently used (best effort: a read-only folder keeps its order). */
function touch(entry: string): void {
  try {
    const now = new Date();
    utimesSync(entry, now, now);
  } catch {
    // the order of eviction is all it changes
  }
}

/** Best effort: a session of another process may still map the files (on Windows they cannot be removed until it ends). */
function remove(path: string): void {
  try {
    rmSync(path, { recursive: true, force: true });
  } catch {
    // left for a later load to remove
  }
}

const message = (error: unknown) => (error instanceof Error ? error.message : String(error));

function folderBytes(dir: string): number {
  return readdirSync(dir).reduce((sum, name) => sum + statSync(join(dir, name)).size, 0);
}

const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(0);
