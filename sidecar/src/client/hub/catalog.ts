/**
 * The checkpoints offered by "Download Model…": llava-hf repositories of the one architecture the
 * runtime loads (LlavaForConditionalGeneration). Parameter counts are estimated from each model's
 * config (layer sizes × layers, embeddings, the vision tower), download sizes are those counts in
 * float16 (how they are stored); both are approximate. A licence we could not confirm says so.
 */
export interface CatalogModel {
  repo: string;
  /** Billions of parameters in the decoder layers' linear projections (what 4-bit weights shrink). */
  layerParamsB: number;
  /** Billions of other parameters (embeddings, norms, the vision tower, the projector): kept in float32. */
  otherParamsB: number;
  downloadGB: number;
  license: string;
  goodAt: string;
}

export const CATALOG: readonly CatalogModel[] = [
  {
    repo: 'llava-hf/llava-interleave-qwen-0.5b-hf',
    layerParamsB: 0.31,
    otherParamsB: 0.59,
    downloadGB: 1.8,
    license: 'unknown: see the model card (Qwen1.5 base)',
    goodAt: 'small and quick on a CPU; several images in one question; simple descriptions',
  },
  {
    repo: 'llava-hf/llava-1.5-7b-hf',
    layerParamsB: 6.48,
    otherParamsB: 0.58,
    downloadGB: 14.1,
    license: 'Llama 2 Community License',
    goodAt: 'the LOOK-M paper\'s model; general questions about photos, screenshots and diagrams',
  },
  {
    repo: 'llava-hf/llava-1.5-13b-hf',
    layerParamsB: 12.69,
    otherParamsB: 0.66,
    downloadGB: 26.7,
    license: 'Llama 2 Community License',
    goodAt: 'better reasoning and reading than 7B; needs much more memory',
  },
  {
    repo: 'llava-hf/bakLlava-v1-hf',
    layerParamsB: 6.98,
    otherParamsB: 0.58,
    downloadGB: 15.1,
    license: 'unknown: see the model card (Mistral-7B base, LLaVA 1.5 data)',
    goodAt: 'a Mistral-7B base: stronger English text than LLaVA 1.5 7B',
  },
];

/**
 * Memory the weights need once loaded, in GB: float32 throughout, or with 4-bit layers
 * (MatMulNBits: 4 bits plus a scale per block of 32, about 1/7 of float32; see lookm.weightBits).
 */
export function memoryNeededGB(model: CatalogModel, weightBits: number): number {
  const layerBytesPerParam = weightBits === 4 ? 4 / 7 : 4;
  return model.layerParamsB * layerBytesPerParam + model.otherParamsB * 4;
}

/** One line for a quick pick's detail. */
export function describe(model: CatalogModel, weightBits: number): string {
  const params = model.layerParamsB + model.otherParamsB;
  return `${params.toFixed(1)}B parameters · download ≈ ${model.downloadGB} GB · memory ≈ ${memoryNeededGB(model, weightBits).toFixed(1)} GB at ${weightBits}-bit weights · ${model.license} · ${model.goodAt}`;
}
