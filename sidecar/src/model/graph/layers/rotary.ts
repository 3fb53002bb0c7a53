/**
 * Rotary position embeddings (the "rotate half" form of Llama, Mistral, Qwen2): cos / sin
 * tables `[1, S, D]` from the explicit positions and inverse frequencies (any scaling is in the
 * frequencies, see `text/rope.ts`), applied per head to `[heads, S, D]`.
 */
import type { GraphBuilder } from '../onnxBuilder.js';

export interface RotaryTables {
  cos: string;
  sin: string;
}

export function rotaryTables(g: GraphBuilder, positionIds: string, inverseFrequencies: Float32Array): RotaryTables {
  const positions = g.op('Cast', [positionIds], { to: 1 }, '/rope/positions');
  const freqs = g.op('Mul', [g.op('Unsqueeze', [positions, g.ints([1])], {}, '/rope/column'), g.vector('rope_inv_freq', inverseFrequencies)], {}, '/rope/freqs');
  const angles = g.op('Unsqueeze', [g.op('Concat', [freqs, freqs], { axis: -1 }, '/rope/angles_half'), g.ints([0])], {}, '/rope/angles');
  return { cos: g.op('Cos', [angles], {}, '/rope/cos'), sin: g.op('Sin', [angles], {}, '/rope/sin') };
}

/** `x * cos + rotate_half(x) * sin` for `x [heads, S, D]`. */
export function rotateHalf(g: GraphBuilder, x: string, { cos, sin }: RotaryTables, headDim: number, name: string): string {
  const D = headDim;
  const first = g.op('Slice', [x, g.ints([0]), g.ints([D / 2]), g.ints([2])], {}, `${name}/x1`);
  const second = g.op('Slice', [x, g.ints([D / 2]), g.ints([D]), g.ints([2])], {}, `${name}/x2`);
  const rotated = g.op('Concat', [g.op('Neg', [second], {}, `${name}/neg`), first], { axis: 2 }, `${name}/rotate_half`);
  return g.op('Add', [g.op('Mul', [x, cos], {}, `${name}/cos`), g.op('Mul', [rotated, sin], {}, `${name}/sin`)], {}, name);
}
