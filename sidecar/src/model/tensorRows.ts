/**
 * Rows of a 2-D checkpoint tensor `[rows, width]`, read from the safetensors file when asked for.
 * The token embedding table is looked up a few rows per step: reading them from the file (one
 * `pread` of `width` values per token, widened when F16/BF16) costs microseconds and holds no
 * second copy of a table that can be hundreds of MB (onnxruntime already holds one when the LM
 * head is tied to it). The file stays open from load to `close`, so a checkpoint replaced on disk
 * meanwhile (a new download relinks the Hugging Face cache) is not mixed into this one.
 */
import { closeSync } from 'node:fs';
import { openRegularFile } from './files.js';
import { readFloat32Into, type TensorEntry } from './safetensors.js';

export class TensorRows {
  private fd: number | null;

  constructor(
    private readonly entry: TensorEntry,
    readonly width: number,
  ) {
    this.fd = openRegularFile(entry.file).fd;
  }

  get rows(): number {
    return this.entry.shape[0];
  }

  /** Rows `ids` as float32 into `into` (`[ids.length, width]`); the caller checks the ids are rows of the tensor. */
  read(ids: ArrayLike<number>, into: Float32Array = new Float32Array(ids.length * this.width)): Float32Array {
    if (this.fd === null) throw new Error(`the rows of tensor "${this.entry.name}" were read after close()`);
    if (into.length !== ids.length * this.width) throw new RangeError(`${ids.length} rows of ${this.width} need ${ids.length * this.width} values, the output holds ${into.length}`);
    const W = this.width;
    for (let i = 0; i < ids.length; i++) readFloat32Into(this.entry, into.subarray(i * W, (i + 1) * W), ids[i] * W, this.fd);
    return into;
  }

  close(): void {
    if (this.fd === null) return;
    closeSync(this.fd);
    this.fd = null;
  }
}
