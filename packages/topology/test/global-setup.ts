// The hub runs in a worker thread whose script is the built dist/hub-worker.js, also when the
// tests run the TypeScript sources (on Node 20 a worker cannot use the parent's TypeScript
// loader). So the tests exercise the built hub: refuse to run them against a stale build.
import { readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const packageDir = fileURLToPath(new URL('..', import.meta.url))

export default function checkBuild(): void {
  const built = join(packageDir, 'dist', 'hub-worker.js')
  let builtAt: number
  try {
    builtAt = statSync(built).mtimeMs
  } catch {
    throw new Error(`${built} is missing: build the package first (pnpm --filter @ipc-pubsub/topology build)`)
  }
  const src = join(packageDir, 'src')
  const stale = readdirSync(src).filter(
    (name) => name.endsWith('.ts') && !name.endsWith('.test.ts') && statSync(join(src, name)).mtimeMs > builtAt,
  )
  if (stale.length > 0) {
    throw new Error(`dist/ is older than src/${stale.join(', src/')}: rebuild (pnpm --filter @ipc-pubsub/topology build)`)
  }
}
