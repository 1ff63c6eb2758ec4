import { defineConfig } from 'tsup'
import base from '../../tsup.config.base.ts'

// A second entry: the hub runs in a worker thread (src/hub-thread.ts), and a worker's script
// must be a file. dist/hub-worker.js sits next to dist/index.js and loads only what the hub
// needs (shared code goes to a common chunk). Types are for the public entry only.
export default defineConfig({
  ...base,
  entry: ['src/index.ts', 'src/hub-worker.ts'],
  dts: { entry: 'src/index.ts' },
})
