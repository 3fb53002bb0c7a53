/** The chat's token count for a message with images: a model whose images take a size-dependent count counts each at its most. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { imageTokenEstimate } from '../../extension/src/lm/tokenEstimate.js';

describe('image token estimate', () => {
  it('LLaVA: tokensPerImage per image', () => {
    assert.equal(imageTokenEstimate({ tokensPerImage: 576 }, 2), 1152);
  });
  it('Qwen2-VL (tokensPerImage 0, the count follows each image): the most one image can become, per image', () => {
    assert.equal(imageTokenEstimate({ tokensPerImage: 0, maxTokensPerImage: 1280 }, 3), 3840);
  });
  it('no model or no images: none', () => {
    assert.equal(imageTokenEstimate(undefined, 2), 0);
    assert.equal(imageTokenEstimate({ tokensPerImage: 0, maxTokensPerImage: 20 }, 0), 0);
  });
});
