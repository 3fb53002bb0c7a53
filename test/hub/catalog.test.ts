/**
 * "Download Model…"'s list against the checkpoints' own config.json files (the verbatim copies in
 * test/fixtures/configs/hub): every entry loads, and its parameters, download and memory are the
 * ones the runtime's parser and footprint give for that config.
 */
import assert from 'node:assert/strict';
import { describe as suite, it } from 'node:test';
import { CATALOG, describe, memoryNeededGB } from '../../sidecar/src/client/hub/catalog.js';
import { architectureFor } from '../../sidecar/src/model/architectures/registry.js';
import { countParameters, weightBytes } from '../../sidecar/src/model/footprint.js';
import { hubCheckpoints } from '../../tools/model/hubTable.js';

const checkpoints = hubCheckpoints();

suite('Download Model catalog', () => {
  for (const model of CATALOG) {
    it(`${model.repo}: its figures are those of its config.json`, () => {
      // The plain copy of the checkpoint's config when there is one, else its other copies (a transformers 5 re-save, a cut-short copy).
      const found = checkpoints.filter((c) => c.repo === model.repo).sort((a, b) => Number(a.variant !== undefined) - Number(b.variant !== undefined))[0];
      assert.ok(found?.config, `${model.repo} has no loadable config.json in test/fixtures/configs/hub (${found?.refusal ?? 'none'})`);
      const config = found.config;
      assert.equal(model.textOnly, architectureFor(config.architecture).imageInput(config) === null);
      const { layerProjections, other } = countParameters(config);
      const near = (value: number, expected: number, within: number, what: string) => assert.ok(Math.abs(value - expected) <= within, `${what}: ${value}, the config gives ${expected}`);
      near(model.parametersB, (layerProjections + other) / 1e9, 0.0005, 'parameters (B)');
      near(model.layerParamsB, layerProjections / 1e9, 0.0005, 'layer projections (B)');
      near(model.headParamsB, countParameters(config).lmHead / 1e9, 0.0005, 'LM head (B)');
      near(model.downloadGB, ((layerProjections + other) * 2) / 1e9, 0.005, 'download at 16 bits (GB)');
      near(memoryNeededGB(model, 32), weightBytes(config, 32) / 1e9, 0.003, 'memory at float32 (GB)');
      near(memoryNeededGB(model, 8), weightBytes(config, 8) / 1e9, 0.003, 'memory at 8-bit (GB)');
      near(memoryNeededGB(model, 4), weightBytes(config, 4) / 1e9, 0.003, 'memory at 4-bit (GB)');
    });
  }

  it('offers vision-language checkpoints and text-only models, each line saying which', () => {
    assert.ok(CATALOG.some((m) => m.textOnly) && CATALOG.some((m) => !m.textOnly));
    for (const model of CATALOG) {
      const line = describe(model, 4);
      assert.match(line, /^(text only, no images · )?\d+(\.\d)?[MB] parameters · download ≈ [\d.]+ GB · memory ≈ [\d.]+ GB at 4-bit weights · /);
      assert.equal(line.startsWith('text only'), model.textOnly, line);
    }
    assert.match(describe(CATALOG.find((m) => m.repo === 'llava-hf/llava-1.5-7b-hf')!, 32), /^7\.1B parameters · download ≈ 14\.13 GB · memory ≈ 28\.2 GB at 32-bit weights/);
  });
});
