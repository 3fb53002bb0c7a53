/**
 * The files of a Hugging Face checkpoint that the runtime reads: a download fetches these and
 * nothing else (no `.bin`/`.pt` weights, no ONNX or GGUF exports, no README images).
 */
const EXACT = new Set([
  'config.json',
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'chat_template.json',
  'chat_template.jinja',
  'preprocessor_config.json',
  'processor_config.json',
  'model.safetensors.index.json',
]);

/** Whether `path` (relative to the repository root) is a file the runtime needs. */
export function isRuntimeFile(path: string): boolean {
  if (path.includes('/')) return false; // the runtime reads the checkpoint's top folder only
  return EXACT.has(path) || path.endsWith('.safetensors');
}
