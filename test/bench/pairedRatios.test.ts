/** The llama.cpp comparison's paired decode: ratios taken within each round, then their median. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PairedBurst } from '../../bench/llamacpp/paired.js';
import { pairedRatios } from '../../bench/llamacpp/summary.js';

const burst = (length: number, phase: PairedBurst['phase'], round: number, side: string, msPerStep: number): PairedBurst => ({ length, phase, round, side, msPerStep });

describe('pairedRatios', () => {
  it("takes each round's ratio from that round's bursts, so a drift that slows both sides alike cancels", () => {
    // The machine slows 2x in round 2 and 3x in round 3; ours is 1.25x the peer's speed throughout.
    const bursts = [1, 2, 3].flatMap((round) => [burst(100, 'full', round, 'ours', 40 * round), burst(100, 'full', round, 'peer', 50 * round)]);
    const { decodeFull, decodeLookm } = pairedRatios(bursts, 'peer');
    assert.deepEqual(decodeFull[100], { median: 1.25, min: 1.25, max: 1.25, rounds: 3 });
    assert.deepEqual(decodeLookm, {});
  });

  it('gives the median over rounds with the range, per length and phase, against the peer named', () => {
    const bursts = [
      ...[60, 50, 40].map((ours, i) => burst(4096, 'full', i + 1, 'ours', ours)), // peer / ours: 1, 1.2, 1.5
      ...[1, 2, 3].map((round) => burst(4096, 'full', round, 'peer', 60)),
      ...[1, 2, 3].map((round) => burst(4096, 'full', round, 'other', 30)),
      burst(4096, 'lookm', 1, 'ours', 30),
      burst(4096, 'lookm', 1, 'peer', 60),
    ];
    const r = pairedRatios(bursts, 'peer');
    assert.equal(r.peer, 'peer');
    assert.deepEqual(r.decodeFull[4096], { median: 1.2, min: 1, max: 1.5, rounds: 3 });
    assert.deepEqual(r.decodeLookm[4096], { median: 2, min: 2, max: 2, rounds: 1 });
    assert.deepEqual(pairedRatios(bursts, 'other').decodeFull[4096], { median: 0.6, min: 0.5, max: 0.75, rounds: 3 });
  });

  it('leaves out a round where either side has no burst, and a length with no complete round', () => {
    const bursts = [burst(100, 'full', 1, 'ours', 10), burst(100, 'full', 1, 'peer', 20), burst(100, 'full', 2, 'ours', 10), burst(8192, 'full', 1, 'ours', 10)];
    const r = pairedRatios(bursts, 'peer');
    assert.deepEqual(r.decodeFull[100], { median: 2, min: 2, max: 2, rounds: 1 });
    assert.equal(r.decodeFull[8192], undefined);
  });
});
