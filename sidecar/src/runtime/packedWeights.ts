/**
 * onnxruntime's prepacked weights, saved once per graph and weights and mapped by later loads.
 *
 * Creating a session on the CPU prepacks every float32 projection into the layout its GEMM kernel
 * reads: about 2 GB of freshly written memory for a 0.5B model, most of a load, and on a VM whose
 * first touch of fresh memory is slow, 2.5-7 s for the same load (bench/README.md, "Why the load
 * varies"). Without prepacking the decode is 5-8% slower. onnxruntime can instead write the
 * optimised graph with its prepacked weights to a file (`session.save_external_prepacked_constant_
 * initializers`) and map them on a later load: no packed copy held, the decode unchanged. Such a
 * load still packs each weight and frees it again (onnxruntime finds the saved copy by the hash of
 * the packed bytes), so it saves the memory held after load more than the load's time.
 *
 * An entry is a folder named by a hash of everything the packed bytes depend on (the graph, which
 * names each weight's file and offset; each weight file's size and modification time; onnxruntime's
 * version; the CPU), written under a temporary name and renamed when complete. The data file holds
 * a copy of the weights beside their packed form (onnxruntime keeps the packed bytes in the file of
 * the weight they pack), so an entry takes about twice the weights on disk: the least recently used
 * entries go to keep the folder within its budget. A load that cannot read an entry removes it and
 * packs again; one that cannot write an entry loads without it.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { arch, cpus } from 'node:os';
import { join } from 'node:path';
import { onnx } from 'onnx-proto';
import * as ort from 'onnxruntime-node';

const MODEL = 'model.onnx';
const DATA = 'model.data';
/** Written last: an entry without it is incomplete (a load that died while saving). */
const COMPLETE = 'complete';
/** Beside an entry's name: its graph packs with a kernel not known to restore its saved packing; loads pack it every time. */
const REFUSED = '.refused';
/**
 * The kernels whose saved packing is used. Checked in onnxruntime-node 1.30: float32 Gemm and
 * MatMul (MLAS) give the same logits from a saved entry as after packing at load; MatMulNBits
 * (8- and 4-bit weights) gave NaN logits, so graphs that pack anything else are not kept.
 */
const RESTORABLE = new Set(['Gemm', 'MatMul']);

export type PackedWeightsEvent =
  | { event: 'hit'; entry: string }
  | { event: 'saving'; entry: string; bytes: number }
  | { event: 'saved'; entry: string; bytes: number }
  | { event: 'skipped'; reason: string }
  | { event: 'discarded'; entry: string; reason: string };

/** A graph, the checkpoint files its weights come from, and how onnxruntime gets them. */
export interface CacheableGraph {
  model: Uint8Array;
  /** The files the weights are read from (their paths, sizes and modification times are in the key). */
  sources: readonly string[];
  /** Bytes of the weights the session holds: the budget check before saving. */
  weightBytes: number;
  /**
   * The session options with the weights (the folder of the files the model names, or a buffer of
   * them, widened or quantized) and `config` among the session's entries. Called only when there is
   * no entry, so a load from one reads no weights.
   */
  withWeights(config?: Record<string, string>): ort.InferenceSession.SessionOptions;
}

export class PackedWeightsCache {
  constructor(
    readonly dir: string,
    /** Most bytes the entries may take on disk together (0: the cache is off). */
    readonly budgetBytes: number,
    private readonly onEvent: (event: PackedWeightsEvent) => void = () => undefined,
  ) {}

  /**
   * A session for `graph`: from its entry with `options` (the CPU's) when there is one, else
   * created as usual and, within the budget, saved as a new entry.
   */
  async createSession(graph: CacheableGraph, options: ort.InferenceSession.SessionOptions): Promise<ort.InferenceSession> {
    const plain = () => ort.InferenceSession.create(graph.model, graph.withWeights());
    if (this.budgetBytes <= 0) return plain();
    const key = this.keyOf(graph);
    const entry = join(this.dir, key);
    if (existsSync(entry + REFUSED)) return plain();
    if (existsSync(join(entry, COMPLETE))) {
      try {
        // Optimised already: optimising again would find nothing to change.
        const session = await ort.InferenceSession.create(join(entry, MODEL), { ...options, graphOptimizationLevel: 'disabled' });
        touch(entry);
        this.onEvent({ event: 'hit', entry });
        return session;
      } catch (error) {
        this.discard(entry, `onnxruntime could not load it (${message(error)})`);
      }
    }
    // An entry holds the weights twice (a copy and the packed form).
    const needed = 2 * graph.weightBytes;
    if (needed > this.budgetBytes) {
      this.onEvent({ event: 'skipped', reason: `the packed weights would take about ${mib(needed)} MiB, over the cache's ${mib(this.budgetBytes)} MiB` });
      return plain();
    }
    const partial = join(this.dir, `${key}.partial-${process.pid}`);
    this.onEvent({ event: 'saving', entry, bytes: needed });
    let session: ort.InferenceSession;
    try {
      mkdirSync(partial, { recursive: true });
      session = await ort.InferenceSession.create(graph.model, {
        ...graph.withWeights({
          optimized_model_external_initializers_file_name: DATA,
          optimized_model_external_initializers_min_size_in_bytes: '1024',
          save_external_prepacked_constant_initializers: '1',
        }),
        optimizedModelFilePath: join(partial, MODEL),
        // onnxruntime warns that an optimised graph may be specific to this CPU: the key names the CPU.
        logSeverityLevel: 3,
      });
    } catch (error) {
      // The disk is full, the folder is read-only...: load as if there were no cache.
      remove(partial);
      this.onEvent({ event: 'skipped', reason: `could not save the packed weights: ${message(error)}` });
      return plain();
    }
    try {
      const unrestorable = packingKernels(join(partial, MODEL)).filter((op) => !RESTORABLE.has(op));
      if (unrestorable.length) {
        remove(partial);
        writeFileSync(entry + REFUSED, `packs with ${unrestorable.join(', ')}\n`);
        this.onEvent({ event: 'skipped', reason: `its graph packs weights with ${unrestorable.join(', ')}, whose saved packing is not used: packed at every load` });
        return session;
      }
      writeFileSync(join(partial, COMPLETE), '');
      const bytes = folderBytes(partial);
      this.makeRoom(bytes, key);
      renameSync(partial, entry);
      this.onEvent({ event: 'saved', entry, bytes });
    } catch (error) {
      // Another load of the same graph kept its entry first, or the folder went away: this session is whole all the same.
      remove(partial);
      this.onEvent({ event: 'skipped', reason: `could not keep the packed weights: ${message(error)}` });
    }
    return session;
  }

  /** What the packed bytes depend on. */
  private keyOf(graph: CacheableGraph): string {
    const hash = createHash('sha256');
    hash.update(graph.model);
    for (const file of [...graph.sources].sort()) {
      const { size, mtimeMs } = statSync(file);
      hash.update(`\0${file}\0${size}\0${mtimeMs}`);
    }
    hash.update(`\0${ort.env.versions.common}\0${arch()}\0${cpus()[0]?.model ?? ''}`);
    return hash.digest('hex').slice(0, 32);
  }

  /** Removes the least recently used entries (never `keep`) until `bytes` more fit in the budget. */
  private makeRoom(bytes: number, keep: string): void {
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

  private discard(entry: string, reason: string): void {
    remove(entry);
    this.onEvent({ event: 'discarded', entry, reason });
  }
}

/** The ops whose packed weights a saved model holds (its initializers' `prepacked_*` entries, `Op+hash|offset;length;...`). */
function packingKernels(modelPath: string): string[] {
  const model = onnx.ModelProto.decode(readFileSync(modelPath));
  const ops = new Set<string>();
  for (const tensor of model.graph?.initializer ?? []) {
    for (const { key, value } of tensor.externalData ?? []) if (key?.startsWith('prepacked') && value) ops.add(value.split('+')[0]);
  }
  return [...ops];
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
