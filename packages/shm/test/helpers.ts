import { spawn, type StdioOptions } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { Worker, type WorkerOptions } from 'node:worker_threads'

/** Open file descriptors of this process. */
export function countFds(): number {
  return readdirSync('/proc/self/fd').length
}

export interface ChildResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/**
 * Runs test/fixtures/<name>.ts in a real Node process (TypeScript through tsx). Extra fds in
 * `fds` become the child's fd 3, 4, ...
 */
export function runFixture(
  name: string,
  args: string[] = [],
  options: { fds?: number[]; nodeArgs?: string[]; timeoutMs?: number } = {},
): Promise<ChildResult> {
  const script = fileURLToPath(new URL(`./fixtures/${name}.ts`, import.meta.url))
  const stdio: StdioOptions = ['ignore', 'pipe', 'pipe', ...(options.fds ?? [])]
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), '--import', 'tsx', script, ...args], {
    stdio,
  })
  let stdout = ''
  let stderr = ''
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk
  })
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk
  })
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000)
  return new Promise((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    })
  })
}

/**
 * Starts test/fixtures/<name>.ts in a worker thread. A worker does not inherit the test
 * runner's loader, and Node 20 ignores `--import` in a worker's execArgv, so the worker first
 * registers tsx's loader and then imports the TypeScript fixture.
 */
export function startWorker(name: string, workerData: unknown, options: WorkerOptions = {}): Worker {
  const url = new URL(`./fixtures/${name}.ts`, import.meta.url).href
  const code = `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(url)}) })`
  return new Worker(code, { ...options, eval: true, workerData })
}

/** The next message from a worker; rejects if the worker fails or exits first. */
export function nextMessage<T>(worker: Worker): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: T) => done(undefined, message)
    const onError = (error: Error) => done(error)
    const onExit = (code: number) => done(new Error(`worker exited (${code}) before its message`))
    function done(error: Error | undefined, message?: T): void {
      worker.off('message', onMessage).off('error', onError).off('exit', onExit)
      if (error === undefined) resolve(message as T)
      else reject(error)
    }
    worker.on('message', onMessage).on('error', onError).on('exit', onExit)
  })
}
