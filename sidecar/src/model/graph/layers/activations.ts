/** Activations by transformers' `hidden_act` names. */
import type { GraphBuilder } from '../onnxBuilder.js';

/** The activations `activation` builds; config schemas refuse any other by name. */
export const ACTIVATIONS = ['quick_gelu', 'gelu', 'gelu_pytorch_tanh', 'gelu_new'] as const;

export function activation(g: GraphBuilder, x: string, kind: string, name: string): string {
  switch (kind) {
    case 'quick_gelu':
      return g.op('Mul', [x, g.op('Sigmoid', [g.op('Mul', [x, g.scalar(1.702)], {}, `${name}/scaled`)], {}, `${name}/sigmoid`)], {}, name);
    case 'gelu': {
      const erf = g.op('Erf', [g.op('Mul', [x, g.scalar(Math.SQRT1_2)], {}, `${name}/scaled`)], {}, `${name}/erf`);
      return g.op('Mul', [g.op('Mul', [x, g.scalar(0.5)], {}, `${name}/half`), g.op('Add', [erf, g.scalar(1)], {}, `${name}/one_plus`)], {}, name);
    }
    case 'gelu_pytorch_tanh':
    case 'gelu_new': {
      const cube = g.op('Mul', [g.op('Mul', [x, x], {}, `${name}/sq`), x], {}, `${name}/cube`);
      const inner = g.op('Mul', [g.op('Add', [x, g.op('Mul', [cube, g.scalar(0.044715)], {}, `${name}/c`)], {}, `${name}/sum`), g.scalar(Math.sqrt(2 / Math.PI))], {}, `${name}/inner`);
      const tanh = g.op('Tanh', [inner], {}, `${name}/tanh`);
      return g.op('Mul', [g.op('Mul', [x, g.scalar(0.5)], {}, `${name}/half`), g.op('Add', [tanh, g.scalar(1)], {}, `${name}/one_plus`)], {}, name);
    }
    default:
      throw new RangeError(`activation ${JSON.stringify(kind)} is not supported (quick_gelu, gelu, gelu_pytorch_tanh)`);
  }
}
