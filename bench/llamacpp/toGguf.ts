/**
 * `node --import tsx bench/llamacpp/toGguf.ts --model DIR --out FILE.gguf [--type f32|f16]`:
 * a checkpoint's language model (Qwen2 or Llama text decoder, alone or inside LLaVA) as a GGUF
 * file llama.cpp loads, for the llama.cpp benchmark peer. node-llama-cpp ships no converter, so
 * this follows llama.cpp's own (convert_hf_to_gguf.py) for these two architectures:
 *
 * - tensors under llama.cpp's names (`token_embd`, `blk.N.attn_q`, ...), the data as stored
 *   row-major with the dims listed fastest-varying first (`[out, in]` becomes `[in, out]`);
 * - `llama`: Q and K rows permuted within each head from the rotate-half layout of Hugging Face to
 *   the interleaved pairs llama.cpp's rotary embedding expects; `qwen2` keeps them (llama.cpp
 *   applies the rotate-half, "NEOX", rotation to it);
 * - 1-D tensors (norms, biases) stay F32 when `--type f16` narrows the matrices, as llama.cpp's
 *   converter does;
 * - a byte-level BPE ("gpt2") vocabulary of exactly the model's size: the checkpoint's
 *   tokenizer.json where it has one, padded with `[PADn]` placeholders (the benchmark feeds token
 *   ids, so the vocabulary's only job is to have the right size and load).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Checkpoint } from '../../sidecar/src/model/checkpoint.js';
import type { TextConfig } from '../../sidecar/src/model/config.js';
import { bool, f32, i32s, str, strings, TensorType, u32, writeGguf, type TensorSpec, type Value } from './gguf.js';

/** llama.cpp's token types (llama_token_type). */
const NORMAL = 1;
const CONTROL = 3;
const UNUSED = 5;

/** The llama.cpp architecture of a text decoder, or an error that names what is not supported. */
export function ggufArchitecture(text: TextConfig): 'qwen2' | 'llama' {
  const arch = text.modelType === 'qwen2' ? 'qwen2' : text.modelType === 'llama' || text.modelType === 'mistral' ? 'llama' : null;
  if (!arch) throw new Error(`GGUF conversion supports Qwen2 and Llama text decoders; this checkpoint's is "${text.modelType}"`);
  if (text.layerWindows.some((w) => w !== null)) throw new Error('GGUF conversion: sliding-window layers are not supported here');
  if (text.ropeScaling && text.ropeScaling.type !== 'linear') throw new Error(`GGUF conversion: rope scaling "${text.ropeScaling.type}" is not supported here (only linear)`);
  if (arch === 'qwen2' && (text.outputBias || text.mlpBias)) throw new Error('GGUF conversion: llama.cpp\'s qwen2 has no output or MLP biases');
  if (text.headDim * text.numHeads !== text.hiddenSize && arch === 'qwen2') throw new Error('GGUF conversion: qwen2 with head_dim x heads != hidden size is not supported here');
  return arch;
}

/**
 * Rows of a `[heads * headDim, cols]` projection (or a `[heads * headDim]` bias, cols = 1)
 * permuted within each head from Hugging Face's rotate-half order (first half, second half) to
 * interleaved pairs: new row `2i + j` of a head is old row `j * headDim / 2 + i`.
 */
export function interleaveRotaryRows(data: Float32Array, heads: number, headDim: number, cols: number): Float32Array {
  if (data.length !== heads * headDim * cols || headDim % 2) throw new Error(`interleaveRotaryRows: ${data.length} values are not ${heads} heads x ${headDim} rows x ${cols}`);
  const out = new Float32Array(data.length);
  const half = headDim / 2;
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < 2; j++) {
      for (let i = 0; i < half; i++) {
        const from = (h * headDim + j * half + i) * cols;
        const to = (h * headDim + 2 * i + j) * cols;
        out.set(data.subarray(from, from + cols), to);
      }
    }
  }
  return out;
}

interface Vocabulary {
  tokens: string[];
  types: number[];
  merges: string[];
  pre: string;
}

/** The checkpoint's BPE vocabulary padded to `size`, or placeholders alone when it has none. */
export function vocabulary(dir: string, size: number, pre: string): Vocabulary {
  const tokens: (string | undefined)[] = new Array<string | undefined>(size);
  const types = new Array<number>(size).fill(NORMAL);
  let merges: string[] = [];
  const file = join(dir, 'tokenizer.json');
  if (existsSync(file)) {
    const json = JSON.parse(readFileSync(file, 'utf8')) as { model?: { type?: string; vocab?: Record<string, number>; merges?: (string | [string, string])[] }; added_tokens?: { id: number; content: string; special?: boolean }[] };
    if (json.model?.type === 'BPE' && json.model.vocab) {
      for (const [token, id] of Object.entries(json.model.vocab)) if (id < size) tokens[id] = token;
      merges = (json.model.merges ?? []).map((m) => (Array.isArray(m) ? m.join(' ') : m));
      for (const added of json.added_tokens ?? []) {
        if (added.id >= size) continue;
        tokens[added.id] = added.content;
        if (added.special) types[added.id] = CONTROL;
      }
    }
  }
  const seen = new Set<string>();
  for (let id = 0; id < size; id++) {
    // Placeholders for ids the tokenizer leaves out (and for duplicates, which llama.cpp's map would merge).
    let token = tokens[id];
    if (token === undefined || seen.has(token)) {
      token = tokens[id] = `[PAD${id}]`;
      types[id] = UNUSED;
    }
    seen.add(token);
  }
  return { tokens: tokens as string[], types, merges, pre };
}

/** Writes the checkpoint's language model as GGUF; returns the file's bytes. */
export function convertToGguf(dir: string, out: string, type: 'f32' | 'f16' = 'f32'): number {
  const checkpoint = Checkpoint.open(dir);
  const text = checkpoint.config.text;
  const arch = ggufArchitecture(text);
  const { hiddenSize: E, numHeads: H, numKvHeads: Hkv, headDim: D, intermediateSize: F, vocabSize: V } = text;
  const matrix = type === 'f16' ? TensorType.F16 : TensorType.F32;
  const raw = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown> & { text_config?: Record<string, unknown> };
  const rawText = raw.text_config ?? raw;
  const vocab = vocabulary(dir, V, arch === 'qwen2' ? 'qwen2' : 'default');

  const metadata: Record<string, Value> = {
    'general.architecture': str(arch),
    'general.name': str(`lookm-bench ${arch}`),
    'general.file_type': u32(type === 'f16' ? 1 : 0),
    [`${arch}.context_length`]: u32(text.maxPositionEmbeddings),
    [`${arch}.embedding_length`]: u32(E),
    [`${arch}.feed_forward_length`]: u32(F),
    [`${arch}.block_count`]: u32(text.numLayers),
    [`${arch}.attention.head_count`]: u32(H),
    [`${arch}.attention.head_count_kv`]: u32(Hkv),
    [`${arch}.attention.key_length`]: u32(D),
    [`${arch}.attention.value_length`]: u32(D),
    [`${arch}.rope.dimension_count`]: u32(D),
    [`${arch}.rope.freq_base`]: f32(text.ropeTheta),
    [`${arch}.attention.layer_norm_rms_epsilon`]: f32(text.rmsNormEps),
    [`${arch}.vocab_size`]: u32(V),
    ...(text.ropeScaling?.type === 'linear' ? { [`${arch}.rope.scaling.type`]: str('linear'), [`${arch}.rope.scaling.factor`]: f32(text.ropeScaling.factor) } : {}),
    'tokenizer.ggml.model': str('gpt2'),
    'tokenizer.ggml.pre': str(vocab.pre),
    'tokenizer.ggml.tokens': strings(vocab.tokens),
    'tokenizer.ggml.token_type': i32s(vocab.types),
    'tokenizer.ggml.merges': strings(vocab.merges),
    'tokenizer.ggml.add_bos_token': bool(false),
  };
  for (const [field, key] of [['bos_token_id', 'bos'], ['eos_token_id', 'eos'], ['pad_token_id', 'padding']] as const) {
    const id = rawText[field] ?? raw[field];
    if (typeof id === 'number' && id >= 0 && id < V) metadata[`tokenizer.ggml.${key}_token_id`] = u32(id);
  }

  const tensors: TensorSpec[] = [];
  /** A HF `[rows, cols]` matrix (or a 1-D vector: cols = 0) under a llama.cpp name. */
  const add = (name: string, hf: string, rows: number, cols: number, permuteHeads = 0) => {
    const shape = cols ? [rows, cols] : [rows];
    tensors.push({
      name,
      dims: cols ? [cols, rows] : [rows],
      type: cols ? matrix : TensorType.F32,
      data: () => {
        const data = checkpoint.float32(hf, shape);
        return permuteHeads ? interleaveRotaryRows(data, permuteHeads, D, cols || 1) : data;
      },
    });
  };
  const permute = arch === 'llama';
  add('token_embd.weight', 'text.embed_tokens.weight', V, E);
  for (let i = 0; i < text.numLayers; i++) {
    const p = `text.layers.${i}`;
    const b = `blk.${i}`;
    add(`${b}.attn_norm.weight`, `${p}.input_layernorm.weight`, E, 0);
    add(`${b}.attn_q.weight`, `${p}.self_attn.q_proj.weight`, H * D, E, permute ? H : 0);
    add(`${b}.attn_k.weight`, `${p}.self_attn.k_proj.weight`, Hkv * D, E, permute ? Hkv : 0);
    add(`${b}.attn_v.weight`, `${p}.self_attn.v_proj.weight`, Hkv * D, E);
    if (text.qkvBias) {
      add(`${b}.attn_q.bias`, `${p}.self_attn.q_proj.bias`, H * D, 0, permute ? H : 0);
      add(`${b}.attn_k.bias`, `${p}.self_attn.k_proj.bias`, Hkv * D, 0, permute ? Hkv : 0);
      add(`${b}.attn_v.bias`, `${p}.self_attn.v_proj.bias`, Hkv * D, 0);
    }
    add(`${b}.attn_output.weight`, `${p}.self_attn.o_proj.weight`, E, H * D);
    if (text.outputBias) add(`${b}.attn_output.bias`, `${p}.self_attn.o_proj.bias`, E, 0);
    add(`${b}.ffn_norm.weight`, `${p}.post_attention_layernorm.weight`, E, 0);
    add(`${b}.ffn_gate.weight`, `${p}.mlp.gate_proj.weight`, F, E);
    add(`${b}.ffn_up.weight`, `${p}.mlp.up_proj.weight`, F, E);
    add(`${b}.ffn_down.weight`, `${p}.mlp.down_proj.weight`, E, F);
    if (text.mlpBias) {
      add(`${b}.ffn_gate.bias`, `${p}.mlp.gate_proj.bias`, F, 0);
      add(`${b}.ffn_up.bias`, `${p}.mlp.up_proj.bias`, F, 0);
      add(`${b}.ffn_down.bias`, `${p}.mlp.down_proj.bias`, E, 0);
    }
  }
  add('output_norm.weight', 'text.norm.weight', E, 0);
  // Tied heads: llama.cpp falls back to token_embd when output.weight is absent.
  if (!text.tieWordEmbeddings) add('output.weight', 'text.lm_head.weight', V, E);
  return writeGguf(out, metadata, tensors);
}

if (require.main === module) {
  const { values } = parseArgs({ options: { model: { type: 'string' }, out: { type: 'string' }, type: { type: 'string', default: 'f32' } } });
  if (!values.model || !values.out) throw new Error('usage: toGguf.ts --model DIR --out FILE.gguf [--type f32|f16]');
  if (values.type !== 'f32' && values.type !== 'f16') throw new Error(`--type must be f32 or f16, got ${values.type}`);
  const bytes = convertToGguf(values.model, values.out, values.type);
  process.stdout.write(`${values.out}: ${(bytes / 2 ** 20).toFixed(0)} MiB\n`);
}
