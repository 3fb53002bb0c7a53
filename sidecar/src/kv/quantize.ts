/**
 * Symmetric per-group quantization of K/V rows for the cold tier: each row of `headDim` floats is
 * cut into groups of `group` along the row, each group scaled by its largest magnitude. int8
 * stores `round(x / scale) + 128` in a byte (scale = max|x| / 127); int4 stores `round(x / scale)
 * + 8` in a nibble, two per byte (scale = max|x| / 7). The error of one value is at most half its
 * group's scale: `max|x| / 254` (int8), `max|x| / 14` (int4).
 */
import { KvSettingsError } from './errors.js';

export type ColdQuantization = 'int8' | 'int4';

/** Values per scale along head_dim. */
export const DEFAULT_QUANT_GROUP = 32;

export interface QuantFormat {
  bits: 8 | 4;
  /** Floats per row (head_dim). */
  width: number;
  group: number;
}

export function quantFormat(kind: ColdQuantization, width: number, group = DEFAULT_QUANT_GROUP): QuantFormat {
  if (kind !== 'int8' && kind !== 'int4') throw new KvSettingsError(`cold-tier quantization must be int8 or int4, got ${String(kind)}`);
  if (!(Number.isInteger(group) && group >= 1)) throw new KvSettingsError(`quantization group must be a positive integer, got ${group}`);
  return { bits: kind === 'int8' ? 8 : 4, width, group };
}

/** Bytes of one quantized row's codes. */
export function codeBytes(f: QuantFormat): number {
  return f.bits === 8 ? f.width : Math.ceil(f.width / 2);
}

/** Scales (float32) of one row. */
export function groupsPerRow(f: QuantFormat): number {
  return Math.ceil(f.width / f.group);
}

/** The largest code magnitude: 127 or 7. */
function levels(f: QuantFormat): number {
  return f.bits === 8 ? 127 : 7;
}

/** Quantizes `rows` (a whole number of rows of `f.width`) into `codes` and `scales` at row offset `at`. */
export function quantizeRows(f: QuantFormat, rows: Float32Array, codes: Uint8Array, scales: Float32Array, at = 0): void {
  const { width: D, group: G } = f;
  const count = rows.length / D;
  const cb = codeBytes(f);
  const gpr = groupsPerRow(f);
  const top = levels(f);
  for (let r = 0; r < count; r++) {
    const row = rows.subarray(r * D, (r + 1) * D);
    const code = codes.subarray((at + r) * cb, (at + r + 1) * cb);
    if (f.bits === 4) code.fill(0);
    for (let g = 0; g < gpr; g++) {
      let max = 0;
      for (let i = g * G; i < Math.min(D, (g + 1) * G); i++) max = Math.max(max, Math.abs(row[i]));
      const scale = max / top;
      scales[(at + r) * gpr + g] = scale;
      for (let i = g * G; i < Math.min(D, (g + 1) * G); i++) {
        const q = scale > 0 ? Math.max(-top, Math.min(top, Math.round(row[i] / scale))) : 0;
        if (f.bits === 8) code[i] = q + 128;
        else code[i >> 1] |= (q + 8) << ((i & 1) * 4);
      }
    }
  }
}

/** Dequantizes `count` rows starting at row `at` into `out` (`count * f.width` floats). */
export function dequantizeRows(f: QuantFormat, codes: Uint8Array, scales: Float32Array, at: number, count: number, out: Float32Array, outAt = 0): void {
  const { width: D, group: G } = f;
  const cb = codeBytes(f);
  const gpr = groupsPerRow(f);
  for (let r = 0; r < count; r++) {
    const code = codes.subarray((at + r) * cb, (at + r + 1) * cb);
    const o = (outAt + r) * D;
    for (let i = 0; i < D; i++) {
      const q = f.bits === 8 ? code[i] - 128 : ((code[i >> 1] >> ((i & 1) * 4)) & 15) - 8;
      out[o + i] = q * scales[(at + r) * gpr + Math.floor(i / G)];
    }
  }
}
