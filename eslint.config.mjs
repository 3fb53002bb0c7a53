// Flat config: typescript-eslint's type-aware recommended rules over every TypeScript source.
import eslint from '@eslint/js';
import tseslint from 'typescript-eslint';

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
  {
    // The KV engine is pure: no editor, no sockets, no model runtime.
    files: ['sidecar/src/kv/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: ['vscode', 'onnxruntime-node', 'ws', 'node:*', 'fs', 'path'] }],
    },
  },
  {
    // The protocol is shared with the extension: no Node, no VS Code, no transport.
    files: ['sidecar/src/protocol/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: ['vscode', 'vscode-jsonrpc/node', 'onnxruntime-node', 'ws', 'node:*', 'fs', 'path'] }],
    },
  },
  {
    // Pure extension modules, unit-tested outside VS Code.
    files: ['extension/src/settings.ts', 'extension/src/statusText.ts', 'extension/src/chat/format.ts', 'extension/src/cacheView/viewModel.ts', 'extension/src/sidecar/restartPolicy.ts', 'extension/src/lm/conversations.ts', 'extension/src/chat/history.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: ['vscode'] }] },
  },
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
