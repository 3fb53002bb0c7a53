/** A short seeded fuzz round against the real sidecar (the full round: npm run fuzz -- --count 10000). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { generateCases } from '../../tools/fuzz/cases.js';
import { runFuzz } from '../../tools/fuzz/run.js';
import { LIMITS } from '../../sidecar/src/protocol/index.js';

describe('protocol fuzzing', () => {
  it('generates every kind of bad input, reproducibly', () => {
    const ctx = { sessionId: 's', pngBase64: 'AAAA', hostileModels: [{ name: 'm', dir: '/m', error: /x/, notInMessage: 's' }] };
    const names = new Set(generateCases(400, 7, ctx).map((c) => c.name.replace(/:.*/, '')));
    assert.ok(names.size >= 19, [...names].join(', '));
    assert.ok(names.has('image bomb') && names.has('hostile model folder'), [...names].join(', '));
    assert.deepEqual(generateCases(50, 7, ctx), generateCases(50, 7, ctx));
  });

  it('300 seeded cases: each gets its expected error, the server always answers after, nothing crashes', async () => {
    const report = await runFuzz(300, 12345, undefined, { flood: { connections: 200, sessions: 300, waitForDrop: false } });
    assert.equal(report.crashed, false);
    assert.deepEqual(report.failures, []);
    assert.equal(report.passed, 300);
    assert.equal(report.exhaustion?.authorisedAccepted, LIMITS.maxConnections - 2, 'the cap holds (two connections were already open)');
    assert.equal(report.exhaustion?.sessionsCreated, 300);
  });
});
