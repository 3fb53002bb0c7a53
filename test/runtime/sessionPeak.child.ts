/**
 * Run by weightsFromFiles.test.ts in a process of its own: `node --import tsx sessionPeak.child.ts
 * DIR files|buffer` creates the decoder of the checkpoint in DIR (its whole load: weights read and
 * the session created) and prints, as JSON, how far the process's peak RSS rose above its RSS
 * before (the kernel's high-water mark, reset first: Linux) and the first logits of a short prompt.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { Checkpoint } from '../../sidecar/src/model/checkpoint.js';
import { TextDecoder } from '../../sidecar/src/runtime/textDecoder.js';

function status(): { peak: number; rss: number } {
  const text = readFileSync('/proc/self/status', 'utf8');
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)![1]) * 1024;
  return { peak: kib('VmHWM'), rss: kib('VmRSS') };
}

async function main(): Promise<void> {
  const [dir, mode] = process.argv.slice(2);
  const checkpoint = Checkpoint.open(dir);
  writeFileSync('/proc/self/clear_refs', '5');
  const before = status();
  const decoder = await TextDecoder.create(checkpoint, { threads: 1, weightsFromFiles: mode === 'files' });
  const peakRise = status().peak - before.rss;
  const ids = [5, 17, 42, 7];
  const { logits } = await decoder.forward(decoder.embed(ids), Int32Array.from(ids, (_, i) => i), decoder.emptyPast());
  await decoder.release();
  process.stdout.write(JSON.stringify({ peakRise, logits: Array.from(logits.subarray(0, 64)) }));
}

void main();
