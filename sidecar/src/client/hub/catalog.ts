/**
 * The checkpoints offered by "Download Model…": vision-language checkpoints (LLaVA, LLaVA-NeXT's
 * and LLaVA-OneVision's any resolution, SmolVLM, Qwen2.5-VL: images and text) and small text-only causal LMs for questions about long files. Every figure is
 * computed from the checkpoint's own config.json (the verbatim copies in
 * test/fixtures/configs/hub, with sidecar/src/model/footprint.ts; test/hub/catalog.test.ts keeps
 * them equal): parameters as transformers counts them, the download as those parameters in 16-bit
 * files, memory as the runtime holds the weights. A licence we could not confirm says so.
 */
export interface CatalogModel {
  repo: string;
  /** Billions of parameters in the checkpoint. */
  parametersB: number;
  /** Billions of parameters in the decoder layers' linear projections (what 4-bit weights shrink). */
  layerParamsB: number;
  /**
   * Billions of parameters the runtime holds in float32 whatever lookm.weightBits says: the
   * embeddings, norms,
   * biases, the vision layers it reads and the projector.
   */
  float32ParamsB: number;
  /** Of `float32ParamsB`, the LM head's matrix (the embedding table when tied): what 8-bit weights quantize besides the layers. */
  headParamsB: number;
  downloadGB: number;
  /** Text-only causal LM: no images, but a long context for files. */
  textOnly: boolean;
  license: string;
  goodAt: string;
}

export const CATALOG: readonly CatalogModel[] = [
  {
    repo: 'llava-hf/llava-interleave-qwen-0.5b-hf',
    parametersB: 0.864,
    layerParamsB: 0.308,
    float32ParamsB: 0.556,
    headParamsB: 0.156,
    downloadGB: 1.73,
    textOnly: false,
    license: 'unknown: see the model card (Qwen1.5 base)',
    goodAt: 'small and quick on a CPU; several images in one question; simple descriptions',
  },
  {
    repo: 'HuggingFaceTB/SmolVLM-256M-Instruct',
    parametersB: 0.256,
    layerParamsB: 0.106,
    float32ParamsB: 0.15,
    headParamsB: 0.028,
    downloadGB: 0.51,
    textOnly: false,
    license: 'Apache 2.0',
    goodAt: 'the smallest: reads screenshots and documents split into 512-pixel tiles; quick on a CPU',
  },
  {
    repo: 'llava-hf/llava-1.5-7b-hf',
    parametersB: 7.063,
    layerParamsB: 6.476,
    float32ParamsB: 0.575,
    headParamsB: 0.131,
    downloadGB: 14.13,
    textOnly: false,
    license: 'Llama 2 Community License',
    goodAt: "the LOOK-M paper's model; general questions about photos, screenshots and diagrams",
  },
  {
    repo: 'llava-hf/llava-1.5-13b-hf',
    parametersB: 13.351,
    layerParamsB: 12.688,
    float32ParamsB: 0.651,
    headParamsB: 0.164,
    downloadGB: 26.7,
    textOnly: false,
    license: 'Llama 2 Community License',
    goodAt: 'better reasoning and reading than 7B; needs much more memory',
  },
  {
    repo: 'llava-hf/bakLlava-v1-hf',
    parametersB: 7.567,
    layerParamsB: 6.979,
    float32ParamsB: 0.575,
    headParamsB: 0.131,
    downloadGB: 15.13,
    textOnly: false,
    license: 'unknown: see the model card (Mistral-7B base, LLaVA 1.5 data)',
    goodAt: 'a Mistral-7B base: stronger English text than LLaVA 1.5 7B',
  },
  {
    repo: 'Qwen/Qwen2.5-VL-3B-Instruct',
    parametersB: 3.755,
    layerParamsB: 2.775,
    float32ParamsB: 0.98,
    headParamsB: 0.311,
    downloadGB: 7.51,
    textOnly: false,
    license: 'unknown: see the model card',
    goodAt: 'screenshots, UI and code read at their own resolution (no fixed-size crop); 128K-token context',
  },
  {
    repo: 'llava-hf/llava-v1.6-mistral-7b-hf',
    parametersB: 7.567,
    layerParamsB: 6.979,
    float32ParamsB: 0.575,
    headParamsB: 0.131,
    downloadGB: 15.13,
    textOnly: false,
    license: 'unknown: see the model card (Mistral-7B-Instruct-v0.2 base)',
    goodAt: 'LLaVA-NeXT: screenshots and documents at up to 672 x 672 or 1008 x 336 (tiles), so small text stays readable',
  },
  {
    repo: 'llava-hf/llava-onevision-qwen2-7b-si-hf',
    parametersB: 8.031,
    layerParamsB: 6.525,
    float32ParamsB: 1.506,
    headParamsB: 0.545,
    downloadGB: 16.06,
    textOnly: false,
    license: 'unknown: see the model card (Qwen2-7B-Instruct base)',
    goodAt: 'LLaVA-OneVision: screenshots and documents in 384-pixel tiles up to 2304 x 2304 (pooled past 9 tiles), so small text stays readable; 32K-token context',
  },
  {
    repo: 'HuggingFaceTB/SmolLM2-135M-Instruct',
    parametersB: 0.135,
    layerParamsB: 0.106,
    float32ParamsB: 0.028,
    headParamsB: 0.028,
    downloadGB: 0.27,
    textOnly: true,
    license: 'Apache 2.0',
    goodAt: 'tiny and instant; 8K-token context; simple questions about a file',
  },
  {
    repo: 'Qwen/Qwen2.5-0.5B-Instruct',
    parametersB: 0.494,
    layerParamsB: 0.358,
    float32ParamsB: 0.136,
    headParamsB: 0.136,
    downloadGB: 0.99,
    textOnly: true,
    license: 'Apache 2.0',
    goodAt: '32K-token context: long files and code on a laptop CPU',
  },
  {
    repo: 'Qwen/Qwen2.5-1.5B-Instruct',
    parametersB: 1.544,
    layerParamsB: 1.31,
    float32ParamsB: 0.234,
    headParamsB: 0.233,
    downloadGB: 3.09,
    textOnly: true,
    license: 'Apache 2.0',
    goodAt: '32K-token context; better answers about long files and code than 0.5B',
  },
];

/**
 * Bytes per parameter of a 4-/8-bit projection: the codes plus a float32 scale per block of 32
 * (MatMulNBits). model/graph/quantize.ts's `bytesPerParameter`, restated: client/ may not import
 * model/ (the layering in ARCHITECTURE.md); test/hub/catalog.test.ts keeps the results equal.
 */
const Q4_BYTES_PER_PARAMETER = 0.5 + 4 / 32;
const Q8_BYTES_PER_PARAMETER = 1 + 4 / 32;

/**
 * Memory the weights need once loaded, in GB: float32 throughout, or with 8- or 4-bit layer projections
 * (see lookm.weightBits), the rest float32. The KV cache comes on top (docs/models.md).
 */
export function memoryNeededGB(model: CatalogModel, weightBits: number): number {
  const layerBytesPerParam = weightBits === 4 ? Q4_BYTES_PER_PARAMETER : weightBits === 8 ? Q8_BYTES_PER_PARAMETER : 4;
  // 8-bit weights quantize the LM head too (model/footprint.ts).
  const head = weightBits === 8 ? model.headParamsB : 0;
  return model.layerParamsB * layerBytesPerParam + head * Q8_BYTES_PER_PARAMETER + (model.float32ParamsB - head) * 4;
}

function parameters(billions: number): string {
  return billions < 1 ? `${Math.round(billions * 1000)}M` : `${billions.toFixed(1)}B`;
}

/** One line for a quick pick's detail. */
export function describe(model: CatalogModel, weightBits: number): string {
  const kind = model.textOnly ? 'text only, no images · ' : '';
  return `${kind}${parameters(model.parametersB)} parameters · download ≈ ${model.downloadGB} GB · memory ≈ ${memoryNeededGB(model, weightBits).toFixed(1)} GB at ${weightBits}-bit weights · ${model.license} · ${model.goodAt}`;
}
