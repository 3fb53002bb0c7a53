/** Feed-forward blocks over `[rows, hidden]`, without the residual (the caller adds it). */
import type { GraphBuilder } from '../onnxBuilder.js';
import { activation } from './activations.js';
import type { Linear } from './linear.js';

/** Llama's gated MLP: `down(silu(gate(x)) * up(x))`, weights `<prefix>.{gate,up,down}_proj`. */
export function swiGluMlp(g: GraphBuilder, linear: Linear, x: string, prefix: string, hidden: number, intermediate: number, bias: boolean, name: string): string {
  const gate = linear(x, `${prefix}.gate_proj`, intermediate, hidden, bias, `${name}/gate_proj`);
  const up = linear(x, `${prefix}.up_proj`, intermediate, hidden, bias, `${name}/up_proj`);
  const act = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate], {}, `${name}/sigmoid`)], {}, `${name}/silu`), up], {}, `${name}/act`);
  return linear(act, `${prefix}.down_proj`, hidden, intermediate, bias, `${name}/down_proj`);
}

/** The two-layer MLP of CLIP and most encoders: `fc2(act(fc1(x)))`, with biases. */
export function twoLayerMlp(g: GraphBuilder, linear: Linear, x: string, prefix: string, hidden: number, intermediate: number, act: string, name: string): string {
  const up = activation(g, linear(x, `${prefix}.fc1`, intermediate, hidden, true, `${name}/fc1`), act, `${name}/act`);
  return linear(up, `${prefix}.fc2`, hidden, intermediate, true, `${name}/fc2`);
}
