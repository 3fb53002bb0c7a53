/** The getting-started walkthrough: when it opens by itself, and what its manifest entry points at. */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, posix } from 'node:path';
import { describe, it } from 'node:test';
import { FIRST_STEP, GET_STARTED_COMMAND, openWalkthroughOnFirstRun, WALKTHROUGH, WALKTHROUGH_SHOWN_KEY, type FirstRunMemory } from '../../extension/src/walkthrough/firstRun.js';

const root = join(__dirname, '../..');

type Step = { id: string; title: string; description: string; media: { image?: string; markdown?: string; altText?: string } };
const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  contributes: { commands: { command: string }[]; walkthroughs: { id: string; title: string; steps: Step[] }[] };
};

/** VS Code's global state, in memory. */
function memory(initial: Record<string, unknown> = {}): FirstRunMemory & { values: Record<string, unknown> } {
  const values = { ...initial };
  return { values, get: <T>(key: string) => values[key] as T | undefined, update: (key, value) => Promise.resolve(void (values[key] = value)) };
}

describe('walkthrough: opened by itself once', () => {
  it('opens on the first run with no model chosen, and never again (a user who closed it is not shown it twice)', async () => {
    const state = memory();
    let opened = 0;
    const open = () => Promise.resolve(void opened++);
    assert.equal(await openWalkthroughOnFirstRun(state, '', open), true);
    assert.equal(await openWalkthroughOnFirstRun(state, '', open), false);
    assert.equal(opened, 1);
    assert.equal(state.values[WALKTHROUGH_SHOWN_KEY], true);
  });

  it('does not open for a user who chose a model', async () => {
    const state = memory();
    let opened = 0;
    assert.equal(await openWalkthroughOnFirstRun(state, '/models/llava-1.5-7b-hf', () => Promise.resolve(void opened++)), false);
    assert.equal(opened, 0);
  });

  it('remembers before opening: an open that fails is not retried at every start', async () => {
    const state = memory();
    await assert.rejects(openWalkthroughOnFirstRun(state, '', () => Promise.reject(new Error('no workbench'))), /no workbench/);
    assert.equal(state.values[WALKTHROUGH_SHOWN_KEY], true);
  });
});

describe('walkthrough: manifest', () => {
  const walkthrough = manifest.contributes.walkthroughs.find((w) => w.id === WALKTHROUGH);
  const ignore = readFileSync(join(root, '.vscodeignore'), 'utf8').split('\n').map((line) => line.trim());

  /** Whether the package keeps `path`: under an excluded folder of .vscodeignore only when named by a `!` line. */
  const packed = (path: string) => ignore.includes(`!${path}`) || !ignore.some((line) => line.endsWith('/**') && !line.startsWith('!') && path.startsWith(line.slice(0, -2)));

  it('is declared under the id the code opens, with LOOK-M: Get Started', () => {
    assert.ok(walkthrough, `contributes.walkthroughs has "${WALKTHROUGH}"`);
    assert.ok(manifest.contributes.commands.some((c) => c.command === GET_STARTED_COMMAND));
    assert.equal(walkthrough?.steps[0].id, FIRST_STEP, 'it opens on its first step');
  });

  it('every step\'s media exists, is packed into the .vsix, and every image has a description', () => {
    for (const step of walkthrough?.steps ?? []) {
      const files = step.media.image ? [step.media.image] : [];
      if (step.media.image) assert.ok(step.media.altText, `${step.id}: altText`);
      if (step.media.markdown) {
        files.push(step.media.markdown);
        const text = readFileSync(join(root, step.media.markdown), 'utf8');
        // Relative to the markdown file, as the walkthrough's webview resolves them.
        for (const [, alt, src] of text.matchAll(/!\[([^\]]*)\]\(([^)]+)\)/g)) {
          assert.ok(alt, `${step.media.markdown}: ${src} has alt text`);
          files.push(posix.join(dirname(step.media.markdown), src));
        }
      }
      assert.ok(files.length > 0, `${step.id} shows something`);
      for (const file of files) {
        assert.ok(existsSync(join(root, file)), `${step.id}: ${file} exists`);
        assert.ok(packed(file), `${step.id}: ${file} is excluded by .vscodeignore (add !${file})`);
      }
    }
  });

  it('every button runs a command the extension contributes, or the workbench\'s own with valid JSON arguments', () => {
    const ours = new Set(manifest.contributes.commands.map((c) => c.command));
    const links = (walkthrough?.steps ?? []).flatMap((s) => [...s.description.matchAll(/\]\(command:([\w.]+)(?:\?([^)]*))?\)/g)]);
    assert.ok(links.length >= 4, 'each step has its button');
    for (const [, command, args] of links) {
      assert.ok(ours.has(command) || command.startsWith('workbench.'), `${command} is contributed`);
      if (args) assert.doesNotThrow(() => JSON.parse(decodeURIComponent(args)) as unknown, `${command}: arguments are URI-encoded JSON`);
    }
  });
});
