/** The kernel's view of this process's memory (Linux /proc), as the benchmarks measure it. */
import { readFileSync, writeFileSync } from 'node:fs';

/** A `/proc/self/status` field in bytes (its value is in kB); 0 where there is none. */
function statusBytes(field: 'VmHWM' | 'VmRSS'): number {
  const line = readFileSync('/proc/self/status', 'utf8').split('\n').find((l) => l.startsWith(`${field}:`));
  return Number(line?.match(/(\d+)/)?.[1] ?? 0) * 1024;
}

/** VmHWM in bytes: the peak RSS since start or since the last `resetPeak`. */
export function peakRss(): number {
  return statusBytes('VmHWM');
}

/** Current RSS (VmRSS) in bytes. */
export function currentRss(): number {
  return statusBytes('VmRSS');
}

/** Resets the high-water mark to the current RSS (Linux `clear_refs` 5); false where that is refused. */
export function resetPeak(): boolean {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}
