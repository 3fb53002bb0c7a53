/**
 * The middle of a set of timings, as the step benchmarks report it: the upper of the two middles
 * of an even count, so it is always a measured value (`llamacpp/summary.ts` averages the two).
 */
export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1];
