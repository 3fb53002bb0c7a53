/**
 * The prompt tokens a message's images take, for the chat's token count: an image's tokens may
 * depend on its size (SmolVLM's tiles, Qwen2-VL's own resolution), so the count takes the most one
 * image can become (`maxTokensPerImage`), never fewer than the model uses; a fixed-size model
 * (LLaVA) says `tokensPerImage` alone.
 */
import type { ModelInfo } from '../../../sidecar/src/protocol/index.js';

export function imageTokenEstimate(info: Pick<ModelInfo, 'tokensPerImage' | 'maxTokensPerImage'> | null | undefined, images: number): number {
  if (!info || images === 0) return 0;
  return images * Math.max(info.tokensPerImage, info.maxTokensPerImage ?? 0);
}
