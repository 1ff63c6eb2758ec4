// Shared helpers of the multi-process pubsub tests: spawning fixture peers
// (test/fixtures/peer.ts), sending them commands, watching what they report, and /proc.
import { type ChildProcess, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { SubStats } from './fixtures/peer.ts'
import type { Counts } from './proc.ts'

export type { Counts, SubStats }

export const packageDir = join(dirname(fileURLToPath(import.meta.url)), '..')
const peerFixture = join(packageDir, 'test', 'fixtures', 'peer.ts')

let counter = 0
/** A domain name no other test run uses. */
export function uniqueDomain(tag: string): string {
  return `tp-${tag}-${process.pid}-${++counter}-${Math.random().toString(36).slice(2, 8)}`
}

/** CLOCK_MONOTONIC ns, comparable with the peers' timestamps. */
export const monotonic = (): bigint => process.hrtime.bigint()

export interface CountEvent {
  t: bigint
  key: string
  kind: 'subscribers' | 'publishers'
  count: number
}

export interface HubEvent {
  t: bigint
  hub: { id: string; epoch: number; self: boolean }
}

const live = new Set<Peer>()

/** A fixture child process. */
export class Peer {
  readonly process: ChildProcess
  readonly label: string
  readonly ready: Promise<{ pid: number; counts: Counts }>
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  readonly countEvents: CountEvent[] = []
  readonly hubEvents: HubEvent[] = []
  readonly warnings: { code: string | null; message: string }[] = []
  /** The node's 'error' events: the code, and the code of its cause. */
  readonly nodeErrors: { code: string | null; cause: string | null; message: string }[] = []
  #stderr = ''
  #seq = 0
  #exit: { code: number | null; signal: NodeJS.Signals | null } | undefined
  readonly #pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>()
  readonly #watchers = new Set<() => void>()

  constructor(label: string, nodeArgs: string[] = []) {
    this.label = label
    this.process = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', peerFixture], {
      cwd: packageDir,
      stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
    })
    live.add(this)
    this.process.stderr?.setEncoding('utf8')
    this.process.stderr?.on('data', (chunk: string) => {
      this.#stderr += chunk
    })
    let onReady!: (value: { pid: number; counts: Counts }) => void
    this.ready = new Promise((resolve) => {
      onReady = resolve
    })
    this.process.on('message', (raw) => {
      const message = raw as { type: string; [key: string]: unknown }
      switch (message.type) {
        case 'ready':
          onReady(message as unknown as { pid: number; counts: Counts })
          break
        case 'reply': {
          const pending = this.#pending.get(message.seq as number)
          if (pending === undefined) break
          this.#pending.delete(message.seq as number)
          if (message.ok) pending.resolve(message.value)
          else pending.reject(new Error(`${this.label}: ${String(message.error)}`))
          break
        }
        case 'count':
          this.countEvents.push({ ...(message as unknown as CountEvent), t: BigInt(message.t as string) })
          break
        case 'hub':
          this.hubEvents.push({ ...(message as unknown as HubEvent), t: BigInt(message.t as string) })
          break
        case 'warning':
          this.warnings.push(message as unknown as { code: string | null; message: string })
          break
        case 'node-error':
          this.nodeErrors.push(message as unknown as { code: string | null; cause: string | null; message: string })
          break
      }
      for (const watcher of [...this.#watchers]) watcher()
    })
    this.exited = new Promise((resolve) => {
      this.process.on('exit', (code, signal) => {
        this.#exit = { code, signal }
        live.delete(this)
        resolve({ code, signal })
        const error = new Error(`${this.label} exited (${code ?? signal}); stderr: ${this.#stderr}`)
        for (const pending of this.#pending.values()) pending.reject(error)
        this.#pending.clear()
        for (const watcher of [...this.#watchers]) watcher()
      })
    })
  }

  /** Spawns a peer and waits until it is ready (baseline counts taken). */
  static async start(label: string, nodeArgs: string[] = []): Promise<Peer> {
    const peer = new Peer(label, nodeArgs)
    await Promise.race([
      peer.ready,
      peer.exited.then(() => {
        throw new Error(`${label} exited before ready: ${peer.stderr}`)
      }),
    ])
    return peer
  }

  get pid(): number {
    return this.process.pid as number
  }

  get alive(): boolean {
    return this.#exit === undefined
  }

  get stderr(): string {
    return this.#stderr
  }

  request<T>(cmd: string, args: Record<string, unknown> = {}, timeoutMs = 30_000): Promise<T> {
    if (this.#exit !== undefined) return Promise.reject(new Error(`${this.label} has exited; stderr: ${this.#stderr}`))
    const seq = ++this.#seq
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(seq)
        reject(new Error(`${this.label}: no reply to ${cmd} within ${timeoutMs} ms; stderr: ${this.#stderr}`))
      }, timeoutMs)
      this.#pending.set(seq, {
        resolve: (value) => {
          clearTimeout(timer)
          resolve(value as T)
        },
        reject: (error) => {
          clearTimeout(timer)
          reject(error)
        },
      })
      this.process.send({ seq, cmd, ...args })
    })
  }

  connect(domain: string, name = this.label): Promise<{ id: string; pid: number; isHub: boolean }> {
    return this.request('connect', { domain, name })
  }

  subscribe(
    topic: string,
    options: { policy?: string; queueSize?: number; maxHeld?: number; keep?: boolean; delayMs?: number } = {},
  ): Promise<string> {
    return this.request('subscribe', { topic, ...options })
  }

  publisher(topic: string): Promise<string> {
    return this.request('publisher', { topic })
  }

  publish(
    key: string,
    size: number,
    count: number,
    options: { lossless?: boolean; intervalMs?: number } = {},
    timeoutMs = 60_000,
  ): Promise<{ published: number; refused: number; firstSeq: number; lastSeq: number }> {
    return this.request('publish', { key, size, count, ...options }, timeoutMs)
  }

  stats(key: string): Promise<SubStats> {
    return this.request('stats', { key })
  }

  counts(): Promise<Counts> {
    return this.request('counts')
  }

  /** Polls counts() until `done(counts)` holds (or 5 s pass); returns the last counts. */
  async settleCounts(done: (counts: Counts) => boolean, timeoutMs = 5000): Promise<Counts> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const counts = await this.counts()
      if (done(counts) || Date.now() > deadline) return counts
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }

  /** SIGKILL; returns the monotonic time just before the signal. */
  kill(): bigint {
    const t = monotonic()
    this.process.kill('SIGKILL')
    return t
  }

  /** Resolves once `predicate` holds (checked now and on every message from the child). */
  waitFor(predicate: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
    if (predicate()) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#watchers.delete(check)
        reject(new Error(`${this.label}: ${what} did not happen within ${timeoutMs} ms; stderr: ${this.#stderr}`))
      }, timeoutMs)
      const check = () => {
        if (predicate()) {
          clearTimeout(timer)
          this.#watchers.delete(check)
          resolve()
        }
      }
      this.#watchers.add(check)
    })
  }
}

/** Kills every peer still running (afterEach). */
export async function killAll(): Promise<void> {
  const peers = [...live]
  for (const peer of peers) peer.process.kill('SIGKILL')
  await Promise.all(peers.map((peer) => peer.exited))
}

/** utime + stime of a process, in clock ticks (/proc/<pid>/stat fields 14 and 15). */
export function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // The command name (field 2) may contain spaces: count fields after its closing paren.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return Number(fields[11]) + Number(fields[12])
}

/** Median of numbers. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN
}
