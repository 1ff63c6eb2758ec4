// The published types: members the node uses to drive its publishers, subscriptions and
// messages are marked @internal and stripped (tsconfig stripInternal), so they stay out of
// users' autocomplete. Reads the build output: `turbo run test` builds first.
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { packageDir } from './helpers.ts'

const dts = join(packageDir, 'dist', 'index.d.ts')

describe('dist/index.d.ts', () => {
  it('lists no internal member', () => {
    expect(existsSync(dts), `${dts} is missing: build the package first`).toBe(true)
    const text = readFileSync(dts, 'utf8')
    for (const name of [
      'update(',
      'rename(',
      'receive(',
      'linkClosed(',
      'publisherGone(',
      'publishersChanged(',
      'static create(',
      'static options(',
      'heldToken',
      'createToken',
    ]) {
      expect(text.includes(name), `${name} is in the published types`).toBe(false)
    }
    // The public surface is still there.
    for (const name of ['publish(', 'waitForSubscribers(', 'waitForPublishers(', 'release(', 'declare function connect(']) {
      expect(text.includes(name), `${name} is missing from the published types`).toBe(true)
    }
  })
})
