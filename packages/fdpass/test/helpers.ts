// Shared helpers of the multi-process tests: spawning a fixture child, counting fds.
import { type ChildProcess, spawn, type SpawnOptions } from 'node:child_process'
import { readdirSync, readSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { Worker, type WorkerOptions } from 'node:worker_threads'

export const packageDir = join(dirname(fileURLToPath(import.meta.url)), '..')
export const fixture = join(packageDir, 'test', 'fixtures', 'child.ts')

/** Open fds of this process. */
export function fdCount(): number {
  return readdirSync('/proc/self/fd').length
}

/**
 * Waits until this process's fd count is back to `baseline` (closes that Node defers, like
 * a child's pipes, settle on later loop turns) and returns the last count seen.
 */
export async function settleFdCount(baseline: number, timeoutMs = 3000): Promise<number> {
  const deadline = Date.now() + timeoutMs
  let count = fdCount()
  while (count > baseline && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20))
    count = fdCount()
  }
  return count
}

let counter = 0
/** An abstract address no other test run uses. */
export function uniqueAddress(tag: string): string {
  return `@ipc-pubsub-fdpass-test-${tag}-${process.pid}-${++counter}-${Math.random().toString(36).slice(2, 8)}`
}

/** A message a fixture child sends over IPC: always has a `type`. */
export interface ChildMessage {
  type: string
  [key: string]: unknown
}

/** A running fixture child with helpers to await its IPC messages. */
export interface Child {
  readonly process: ChildProcess
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  /** The next message of this type (buffered if it came earlier). */
  next(type: string, timeoutMs?: number): Promise<ChildMessage>
  send(message: unknown): void
  readonly stderr: () => string
}

/**
 * Spawns `node --import tsx test/fixtures/child.ts <mode> ...args` with an IPC channel. The
 * fixture imports the package's TypeScript sources directly through tsx. `limits.nofile` runs
 * it under `prlimit --nofile=N` (RLIMIT_NOFILE, soft and hard).
 */
export function spawnChild(
  mode: string,
  args: string[] = [],
  options: SpawnOptions = {},
  limits: { nofile?: number } = {},
): Child {
  const node = [process.execPath, '--import', 'tsx', fixture, mode, ...args]
  // util-linux prlimit sets the limit and then execs node: same pid, same IPC channel.
  const argv = limits.nofile === undefined ? node : ['prlimit', `--nofile=${limits.nofile}`, '--', ...node]
  const proc = spawn(argv[0]!, argv.slice(1), {
    cwd: packageDir,
    stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
    ...options,
  })
  let stderr = ''
  proc.stderr?.setEncoding('utf8')
  proc.stderr?.on('data', (chunk: string) => {
    stderr += chunk
  })
  const inbox: ChildMessage[] = []
  const waiting: { type: string; resolve: (m: ChildMessage) => void }[] = []
  proc.on('message', (raw) => {
    const message = raw as ChildMessage
    const i = waiting.findIndex((w) => w.type === message.type)
    if (i >= 0) waiting.splice(i, 1)[0]!.resolve(message)
    else inbox.push(message)
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.on('exit', (code, signal) => resolve({ code, signal }))
    // A child that cannot start (EACCES, ENOENT) fails its waiters instead of the test run.
    proc.on('error', (error) => {
      stderr += `spawn failed: ${error.message}`
      resolve({ code: null, signal: null })
    })
  })
  return {
    process: proc,
    exited,
    stderr: () => stderr,
    send: (message) => proc.send(message as never),
    next(type, timeoutMs = 30_000) {
      const i = inbox.findIndex((m) => m.type === type)
      if (i >= 0) return Promise.resolve(inbox.splice(i, 1)[0]!)
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`child ${mode}: no '${type}' message within ${timeoutMs} ms; stderr: ${stderr}`)),
          timeoutMs,
        )
        const entry = {
          type,
          resolve: (m: ChildMessage) => {
            clearTimeout(timer)
            resolve(m)
          },
        }
        waiting.push(entry)
        void exited.then(({ code, signal }) => {
          const j = waiting.indexOf(entry)
          if (j < 0) return
          waiting.splice(j, 1)
          clearTimeout(timer)
          reject(new Error(`child ${mode} exited (${code ?? signal}) before '${type}'; stderr: ${stderr}`))
        })
      })
    },
  }
}

/** A 4-byte frame holding `n` as a little-endian u32. */
export function u32(n: number): Uint8Array {
  const bytes = new Uint8Array(4)
  new DataView(bytes.buffer).setUint32(0, n, true)
  return bytes
}

/** Reads the u32 at offset 0. */
export function readU32(bytes: Uint8Array): number {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0, true)
}

/** Reads the little-endian u32 at offset 0 of the file behind `fd` (a received memfd). */
export function readFdU32(fd: number): number {
  const buf = Buffer.alloc(4)
  readSync(fd, buf, 0, 4, 0)
  return buf.readUInt32LE(0)
}

/** Path of test/fixtures/<name>.ts. */
export function fixturePath(name: string): string {
  return join(packageDir, 'test', 'fixtures', `${name}.ts`)
}

/**
 * Starts test/fixtures/<name>.ts in a worker thread. A worker does not inherit the test
 * runner's loader, and Node 20 ignores `--import` in a worker's execArgv, so the worker first
 * registers tsx's loader and then imports the TypeScript fixture.
 */
export function startWorker(name: string, workerData: unknown, options: WorkerOptions = {}): Worker {
  const url = pathToFileURL(fixturePath(name)).href
  const code = `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(url)}) })`
  return new Worker(code, { ...options, eval: true, workerData })
}

/** The next message of this type from a worker; rejects if the worker exits first. */
export function nextFromWorker(worker: Worker, type: string, timeoutMs = 30_000): Promise<ChildMessage> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`worker: no '${type}' message within ${timeoutMs} ms`)), timeoutMs)
    const onMessage = (message: ChildMessage) => {
      if (message?.type === type) done(undefined, message)
    }
    const onError = (error: Error) => done(error)
    const onExit = (code: number) => done(new Error(`worker exited (${code}) before '${type}'`))
    function done(error: Error | undefined, message?: ChildMessage): void {
      clearTimeout(timer)
      worker.off('message', onMessage).off('error', onError).off('exit', onExit)
      if (error === undefined) resolve(message!)
      else reject(error)
    }
    worker.on('message', onMessage).on('error', onError).on('exit', onExit)
  })
}
