/** What every graph piece builds with: the node builder and the pool its weights come from. */
import type { GraphBuilder } from '../onnxBuilder.js';
import type { WeightPool } from '../weightPool.js';

export interface GraphContext {
  g: GraphBuilder;
  weights: WeightPool;
}
