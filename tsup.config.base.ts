import { defineConfig } from 'tsup'

/** The one build config every package re-exports: ESM, types, sourcemaps. */
export default defineConfig({
  entry: ['src/index.ts'],
  format: ['esm'],
  target: 'node20',
  dts: true,
  sourcemap: true,
  clean: true,
})
