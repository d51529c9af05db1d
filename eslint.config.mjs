// ESLint for lib/ and test/: the recommended JS and TypeScript rules.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

export default tseslint.config(
  { ignores: ['dist/**', 'build/**', 'node_modules/**', 'scripts/**', '.cache/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  // The web page: plain browser JS.
  { files: ['lib/server/web/**/*.js'], languageOptions: { globals: globals.browser, sourceType: 'script' } },
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
);
