import { defineConfig } from 'tsup'
import base from '../../tsup.config.base.ts'

// The shared config plus the two programs: the CLI and the worker processes it starts.
export default defineConfig({
  ...base,
  entry: ['src/index.ts', 'src/cli.ts', 'src/worker.ts'],
})
