/**
 * The toy model's forward pass in plain TypeScript (float64, no cache, the whole sequence every
 * time): what the ONNX graph composed from the runtime's pieces must compute.
 */
import { TOY_CONFIG } from './checkpoint.js';

type Weights = Map<string, { shape: number[]; data: Float32Array }>;

/** `x [rows, in]` times `W^T` (`W [out, in]`), plus `bias`. */
function linear(x: Float64Array[], w: Float32Array, out: number, bias?: Float32Array): Float64Array[] {
  return x.map((row) => {
    const y = new Float64Array(out);
    for (let o = 0; o < out; o++) {
      let sum = bias ? bias[o] : 0;
      for (let i = 0; i < row.length; i++) sum += row[i] * w[o * row.length + i];
      y[o] = sum;
    }
    return y;
  });
}

function layerNorm(x: Float64Array[], weight: Float32Array, bias: Float32Array, eps: number): Float64Array[] {
  return x.map((row) => {
    const mean = row.reduce((a, b) => a + b, 0) / row.length;
    const variance = row.reduce((a, b) => a + (b - mean) ** 2, 0) / row.length;
    return row.map((v, i) => ((v - mean) / Math.sqrt(variance + eps)) * weight[i] + bias[i]);
  });
}

const geluTanh = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));

/** Rotate-half RoPE of every head of `row` (heads x D) at `position`. */
function rope(row: Float64Array, heads: number, D: number, position: number, theta: number): Float64Array {
  const out = new Float64Array(row.length);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < D / 2; i++) {
      const angle = position * (1 / theta ** ((2 * i) / D));
      const [a, b] = [row[h * D + i], row[h * D + i + D / 2]];
      out[h * D + i] = a * Math.cos(angle) - b * Math.sin(angle);
      out[h * D + i + D / 2] = b * Math.cos(angle) + a * Math.sin(angle);
    }
  }
  return out;
}

/** Logits of the last token of `ids` (positions 0..n-1). */
export function referenceLogits(weights: Weights, ids: number[]): Float64Array {
  const c = TOY_CONFIG;
  const { hidden_size: E, num_attention_heads: H, num_key_value_heads: Hkv, intermediate_size: I, vocab_size: V } = c;
  const D = E / H;
  const w = (name: string) => weights.get(name)!.data;
  let x = ids.map((id) => Float64Array.from(w('transformer.embed_tokens.weight').subarray(id * E, (id + 1) * E)));
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `transformer.layers.${l}`;
    const h = layerNorm(x, w(`${p}.input_layernorm.weight`), w(`${p}.input_layernorm.bias`), c.layer_norm_eps);
    const q = linear(h, w(`${p}.self_attn.q_proj.weight`), H * D).map((row, t) => rope(row, H, D, t, c.rope_theta));
    const k = linear(h, w(`${p}.self_attn.k_proj.weight`), Hkv * D).map((row, t) => rope(row, Hkv, D, t, c.rope_theta));
    const v = linear(h, w(`${p}.self_attn.v_proj.weight`), Hkv * D);
    const context = q.map((qRow, t) => {
      const out = new Float64Array(H * D);
      for (let head = 0; head < H; head++) {
        const kv = Math.floor(head / (H / Hkv));
        const scores = Array.from({ length: t + 1 }, (_, s) => {
          let dot = 0;
          for (let d = 0; d < D; d++) dot += qRow[head * D + d] * k[s][kv * D + d];
          return dot / Math.sqrt(D);
        });
        const max = Math.max(...scores);
        const exps = scores.map((s) => Math.exp(s - max));
        const total = exps.reduce((a, b) => a + b, 0);
        exps.forEach((e, s) => {
          for (let d = 0; d < D; d++) out[head * D + d] += (e / total) * v[s][kv * D + d];
        });
      }
      return out;
    });
    const attended = linear(context, w(`${p}.self_attn.o_proj.weight`), E);
    x = x.map((row, t) => row.map((value, i) => value + attended[t][i]));
    const m = layerNorm(x, w(`${p}.post_attention_layernorm.weight`), w(`${p}.post_attention_layernorm.bias`), c.layer_norm_eps);
    const up = linear(m, w(`${p}.mlp.fc1.weight`), I, w(`${p}.mlp.fc1.bias`)).map((row) => row.map(geluTanh));
    const down = linear(up, w(`${p}.mlp.fc2.weight`), E, w(`${p}.mlp.fc2.bias`));
    x = x.map((row, t) => row.map((value, i) => value + down[t][i]));
  }
  const final = layerNorm([x[x.length - 1]], w('transformer.norm.weight'), w('transformer.norm.bias'), c.layer_norm_eps);
  return linear(final, w('lm_head.weight'), V)[0];
}

/** Greedy continuation of `ids`: `count` tokens, or fewer when one of `eos` is chosen (not included). */
export function referenceGreedy(weights: Weights, ids: number[], count: number, eos: number[]): number[] {
  const generated: number[] = [];
  while (generated.length < count) {
    const logits = referenceLogits(weights, [...ids, ...generated]);
    const next = logits.reduce((best, value, i) => (value > logits[best] ? i : best), 0);
    if (eos.includes(next)) break;
    generated.push(next);
  }
  return generated;
}
