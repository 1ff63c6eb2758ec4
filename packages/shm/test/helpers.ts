import { spawn, type StdioOptions } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

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
