import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    // The hub thread runs dist/hub-worker.js even under test: it must be fresh.
    globalSetup: ['test/global-setup.ts'],
    // Multi-process tests spawn real children; run files one at a time so fd and
    // mapping counts taken from /proc/self are not disturbed by a sibling file.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 30_000,
  },
})
