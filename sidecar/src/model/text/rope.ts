/**
 * Rotary position embedding frequencies as transformers computes them
 * (`modeling_rope_utils.py`): default, linear scaling, and Llama 3's frequency-dependent scaling.
 */
import type { TextConfig } from '../config.js';

export function ropeInverseFrequencies(config: Pick<TextConfig, 'headDim' | 'ropeTheta' | 'ropeScaling'>): Float32Array {
  const { headDim: D, ropeTheta, ropeScaling } = config;
  const inv = Float32Array.from({ length: D / 2 }, (_, i) => 1 / ropeTheta ** ((2 * i) / D));
  if (!ropeScaling) return inv;
  if (ropeScaling.type === 'linear') return inv.map((f) => f / ropeScaling.factor);
  // llama3: long wavelengths are divided by `factor`, short ones kept, a smooth blend between.
  const { factor, lowFreqFactor, highFreqFactor, originalMaxPositions } = ropeScaling;
  const lowFreqWavelen = originalMaxPositions / lowFreqFactor;
  const highFreqWavelen = originalMaxPositions / highFreqFactor;
  return inv.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highFreqWavelen) return f;
    if (wavelen > lowFreqWavelen) return f / factor;
    const smooth = (originalMaxPositions / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
    return (1 - smooth) * (f / factor) + smooth * f;
  });
}
