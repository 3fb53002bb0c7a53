// Flat config: typescript-eslint's type-aware recommended rules over every TypeScript source.
import eslint from '@eslint/js';
import tseslint from 'typescript-eslint';

/**
 * A layer's import rule: none of the sidecar folders in `forbiddenLayers`, none of `packages`,
 * nothing matching the extra `regexes`.
 */
function layer(files, forbiddenLayers, packages, regexes = []) {
  const message = 'This import breaks the layering (see ARCHITECTURE.md).';
  const patterns = [
    ...(forbiddenLayers.length ? [{ regex: `(^|/)(${forbiddenLayers.join('|')})/`, message }] : []),
    ...regexes.map((regex) => ({ regex, message })),
    ...(packages.length ? [{ group: packages, message: 'This layer stays free of this package (see ARCHITECTURE.md).' }] : []),
  ];
  return { files: Array.isArray(files) ? files : [files], rules: { 'no-restricted-imports': ['error', { patterns }] } };
}

export default tseslint.config(
  { ignores: ['dist/**', 'dist-test/**', 'out/**', 'node_modules/**', 'bench/results/**', '.host/**', 'tools/host/**'] },
  eslint.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      eqeqeq: ['error', 'always'],
    },
  },
  // The layering, enforced: cli -> main / client -> server -> session -> runtime -> model -> kv / protocol,
  // with transport (the WebSocket framing) shared by server, client and extension. Each layer may
  // import the ones below it only; see ARCHITECTURE.md.
  layer('sidecar/src/protocol/**/*.ts', ['kv', 'model', 'runtime', 'session', 'engine', 'server', 'client', 'cli', 'transport'], ['vscode', 'vscode-jsonrpc/node', 'onnxruntime-node', 'ws', 'node:*', 'fs', 'path']),
  // The KV engine is pure; of the protocol it reads only the list of policy names.
  layer('sidecar/src/kv/**/*.ts', ['model', 'runtime', 'session', 'engine', 'server', 'client', 'cli', 'transport'], ['vscode', 'onnxruntime-node', 'ws', 'node:*', 'fs', 'path'], ['(^|/)protocol/(?!policies\\.js$)']),
  layer('sidecar/src/transport/**/*.ts', ['kv', 'model', 'runtime', 'session', 'engine', 'server', 'client', 'cli'], ['vscode']),
  layer('sidecar/src/model/**/*.ts', ['runtime', 'session', 'engine', 'server', 'client', 'cli', 'transport'], ['vscode', 'onnxruntime-node']),
  // Inside model/: the graph pieces know no model; text models and vision towers know no architecture
  // (architectures/ composes them). Each entry repeats model/'s own list: a later rule replaces an earlier one.
  layer('sidecar/src/model/graph/**/*.ts', ['runtime', 'session', 'engine', 'server', 'client', 'cli', 'transport', 'text', 'vision', 'architectures'], ['vscode', 'onnxruntime-node']),
  layer(['sidecar/src/model/text/**/*.ts', 'sidecar/src/model/vision/**/*.ts'], ['runtime', 'session', 'engine', 'server', 'client', 'cli', 'transport', 'architectures'], ['vscode', 'onnxruntime-node']),
  layer('sidecar/src/runtime/**/*.ts', ['session', 'engine', 'server', 'client', 'cli', 'transport'], ['vscode']),
  layer('sidecar/src/session/**/*.ts', ['engine', 'server', 'client', 'cli', 'transport'], ['vscode']),
  layer('sidecar/src/engine/**/*.ts', ['server', 'client', 'cli', 'transport'], ['vscode']),
  // The server speaks to the engine (in its worker) only, never to the model or the caches.
  layer('sidecar/src/server/**/*.ts', ['kv', 'model', 'runtime', 'session', 'client', 'cli'], ['vscode', 'onnxruntime-node', 'sharp']),
  layer('sidecar/src/client/**/*.ts', ['kv', 'model', 'runtime', 'session', 'engine', 'server', 'cli'], ['vscode']),
  // The extension reaches the sidecar through its protocol, client and transport only.
  layer('extension/src/**/*.ts', ['kv', 'model', 'runtime', 'session', 'engine', 'server', 'cli'], []),
  // Pure extension modules, unit-tested outside VS Code.
  layer(['extension/src/settings.ts', 'extension/src/statusText.ts', 'extension/src/chat/format.ts', 'extension/src/cacheView/viewModel.ts', 'extension/src/sidecar/restartPolicy.ts', 'extension/src/sidecar/state.ts', 'extension/src/sidecar/logLine.ts', 'extension/src/lm/conversations.ts', 'extension/src/chat/history.ts'], ['kv', 'model', 'runtime', 'session', 'engine', 'server', 'cli'], ['vscode']),
  {
    // node:test's describe/it return promises the runner itself awaits.
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/no-floating-promises': 'off' },
  },
  { files: ['**/*.mjs', 'media/**/*.js'], ...tseslint.configs.disableTypeChecked },
  {
    // The cache view's script runs in a webview (a browser).
    files: ['media/**/*.js'],
    languageOptions: { sourceType: 'script', globals: { window: 'readonly', document: 'readonly', acquireVsCodeApi: 'readonly' } },
  },
  { files: ['**/*.mjs'], languageOptions: { globals: { process: 'readonly', console: 'readonly' } } },
);
