import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'

// CommonJS users load this package with require(), which Node >= 20.19 allows for an ES module
// without top-level await, but only if the `exports` map has a condition that require() matches
// (`default`). This runs a real .cjs file that requires the package by its name from a fresh
// directory, as an app with the package in node_modules would. It also fails, with
// ERR_REQUIRE_ASYNC_MODULE, if any module the package loads gains a top-level await: keep them
// free of it. It loads dist/: build first (turbo's test task depends on build).
const NAME = '@ipc-pubsub/pubsub'
const EXPECTED = { connect: 'function', PubSubNode: 'function', PubSubError: 'function', Message: 'function' }
const PACKAGE_DIR = fileURLToPath(new URL('..', import.meta.url))

const CHECK = `'use strict'
const name = process.argv[2]
const required = require(name)
import(name).then((imported) => {
  const kinds = {}
  for (const key of Object.keys(required)) kinds[key] = typeof required[key]
  process.stdout.write(JSON.stringify({ kinds, sameInstance: required === imported }))
})
`

const app = mkdtempSync(join(tmpdir(), 'ipc-pubsub-require-'))
afterAll(() => rmSync(app, { recursive: true, force: true }))

describe('require() from CommonJS', () => {
  it(`require('${NAME}') loads the same module as import()`, () => {
    mkdirSync(join(app, 'node_modules', '@ipc-pubsub'), { recursive: true })
    symlinkSync(PACKAGE_DIR, join(app, 'node_modules', NAME), 'dir')
    writeFileSync(join(app, 'check.cjs'), CHECK)
    const result = spawnSync(process.execPath, ['check.cjs', NAME], { cwd: app, encoding: 'utf8', timeout: 30_000 })
    // Before `default` was in the exports map this exited 1 with ERR_PACKAGE_PATH_NOT_EXPORTED.
    expect(result.status, result.stderr).toBe(0)
    const { kinds, sameInstance } = JSON.parse(result.stdout) as { kinds: Record<string, string>; sameInstance: boolean }
    for (const [key, kind] of Object.entries(EXPECTED)) expect(kinds[key], key).toBe(kind)
    // One module instance for both loaders: no dual-package copy whose classes fail instanceof.
    expect(sameInstance).toBe(true)
  })
})
