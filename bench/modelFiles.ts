/** Bytes of a checkpoint's `.safetensors` files (what a decode step reads of its weights, at F32); undefined if the folder is gone. */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

export function weightsBytes(model: string): number | undefined {
  if (!existsSync(model)) return undefined;
  return readdirSync(model)
    .filter((f) => f.endsWith('.safetensors'))
    .reduce((sum, f) => sum + statSync(join(model, f)).size, 0);
}
