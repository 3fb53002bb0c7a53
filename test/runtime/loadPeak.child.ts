/**
 * Run by loadMemory.test.ts in a process of its own: `node --import tsx loadPeak.child.ts DIR`
 * registers every tensor of the checkpoint in DIR with a WeightPool, loads it, and prints the
 * float32 bytes of the weights and how far the process's peak RSS rose above its RSS before the
 * load, as JSON. Linux: the kernel's high-water mark is reset just before the load (writing 5 to
 * /proc/self/clear_refs), as starting up (tsx compiling the sources) may peak higher than a load.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { architectureFor } from '../../sidecar/src/model/architectures/registry.js';
import { Checkpoint, canonicalName } from '../../sidecar/src/model/checkpoint.js';
import { WeightPool } from '../../sidecar/src/model/graph/weightPool.js';
import { readSafetensorsHeader } from '../../sidecar/src/model/safetensors.js';

/** VmHWM and VmRSS of this process, in bytes. */
function status(): { peak: number; rss: number } {
  const text = readFileSync('/proc/self/status', 'utf8');
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)![1]) * 1024;
  return { peak: kib('VmHWM'), rss: kib('VmRSS') };
}

const dir = process.argv[2];
const checkpoint = Checkpoint.open(dir);
const pool = new WeightPool(checkpoint);
let float32Bytes = 0;
for (const entry of readSafetensorsHeader(join(dir, 'model.safetensors')).values()) {
  pool.use(canonicalName(entry.name, architectureFor(checkpoint.config.architecture).weightPrefixes), entry.shape);
  float32Bytes += 4 * entry.shape.reduce((a, b) => a * b, 1);
}
writeFileSync('/proc/self/clear_refs', '5');
const before = status();
const loaded = pool.load();
const after = status();
process.stdout.write(JSON.stringify({ float32Bytes, bufferBytes: loaded.data.byteLength, peakRise: after.peak - before.rss, peakBeforeAboveRss: before.peak - before.rss }));
