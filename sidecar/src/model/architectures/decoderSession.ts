/** The decoder session every architecture here shares: a `buildDecoderGraph` over its text config. */
import type { TextConfig } from '../config.js';
import { buildDecoderGraph, llamaBlocks, type DecoderBlocksFactory } from '../text/decoderGraph.js';
import { TEXT_MODELS } from '../text/models/registry.js';
import type { BuildOptions, SessionSpec } from './architecture.js';

/** The decoder of `text`, with the blocks its model type chooses unless `blocks` says otherwise. */
export function decoderSession(text: TextConfig, options: BuildOptions, blocks?: DecoderBlocksFactory): SessionSpec {
  const chosen = blocks ?? TEXT_MODELS[text.modelType as keyof typeof TEXT_MODELS]?.blocks ?? llamaBlocks;
  return { role: 'decoder', embeddingTable: 'text.embed_tokens.weight', build: (weights) => buildDecoderGraph(text, weights, options, chosen) };
}
