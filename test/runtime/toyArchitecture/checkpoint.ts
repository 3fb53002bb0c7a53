/**
 * A seeded ToyGeluForCausalLM checkpoint written by the test: config.json, float32
 * model.safetensors with the toy's own weight names, and the tokenizer and chat template of the
 * tiny Llama fixture (its 416-token vocabulary).
 */
import { copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { mulberry32 } from '../../../sidecar/src/kv/random.js';

export const TOY_CONFIG = {
  architectures: ['ToyGeluForCausalLM'],
  model_type: 'toy_gelu',
  hidden_size: 32,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  intermediate_size: 64,
  vocab_size: 416,
  max_position_embeddings: 512,
  layer_norm_eps: 1e-5,
  rope_theta: 10000,
  hidden_act: 'gelu_pytorch_tanh',
  tie_word_embeddings: false,
};

/** The toy's tensors by checkpoint name (`transformer.*`, `lm_head.weight`), seeded. */
export function toyWeights(seed = 7): Map<string, { shape: number[]; data: Float32Array }> {
  const random = mulberry32(seed);
  const { hidden_size: E, intermediate_size: I, vocab_size: V, num_attention_heads: H, num_key_value_heads: Hkv } = TOY_CONFIG;
  const D = E / H;
  const weights = new Map<string, { shape: number[]; data: Float32Array }>();
  const put = (name: string, shape: number[], scale: number, offset = 0) => {
    const data = Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => offset + scale * (2 * random() - 1));
    weights.set(name, { shape, data });
  };
  put('transformer.embed_tokens.weight', [V, E], 1);
  for (let i = 0; i < TOY_CONFIG.num_hidden_layers; i++) {
    const p = `transformer.layers.${i}`;
    put(`${p}.input_layernorm.weight`, [E], 0.2, 1);
    put(`${p}.input_layernorm.bias`, [E], 0.1);
    put(`${p}.self_attn.q_proj.weight`, [H * D, E], 2 / Math.sqrt(E));
    put(`${p}.self_attn.k_proj.weight`, [Hkv * D, E], 2 / Math.sqrt(E));
    put(`${p}.self_attn.v_proj.weight`, [Hkv * D, E], 1 / Math.sqrt(E));
    put(`${p}.self_attn.o_proj.weight`, [E, H * D], 1 / Math.sqrt(E));
    put(`${p}.post_attention_layernorm.weight`, [E], 0.2, 1);
    put(`${p}.post_attention_layernorm.bias`, [E], 0.1);
    put(`${p}.mlp.fc1.weight`, [I, E], 1 / Math.sqrt(E));
    put(`${p}.mlp.fc1.bias`, [I], 0.1);
    put(`${p}.mlp.fc2.weight`, [E, I], 1 / Math.sqrt(I));
    put(`${p}.mlp.fc2.bias`, [E], 0.1);
  }
  put('transformer.norm.weight', [E], 0.2, 1);
  put('transformer.norm.bias', [E], 0.1);
  put('lm_head.weight', [V, E], 3 / Math.sqrt(E));
  return weights;
}

/** A safetensors file of float32 tensors. */
function writeSafetensors(file: string, tensors: Map<string, { shape: number[]; data: Float32Array }>): void {
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const [name, { shape, data }] of tensors) {
    header[name] = { dtype: 'F32', shape, data_offsets: [offset, offset + data.byteLength] };
    offset += data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(file, Buffer.concat([length, Buffer.from(json), ...[...tensors.values()].map(({ data }) => Buffer.from(data.buffer, data.byteOffset, data.byteLength))]));
}

/** Writes the checkpoint into `dir` (tokenizer files from `tokenizerDir`). */
export function writeToyCheckpoint(dir: string, tokenizerDir: string, weights = toyWeights()): void {
  writeFileSync(join(dir, 'config.json'), JSON.stringify(TOY_CONFIG));
  writeSafetensors(join(dir, 'model.safetensors'), weights);
  for (const file of ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json']) copyFileSync(join(tokenizerDir, file), join(dir, file));
}
