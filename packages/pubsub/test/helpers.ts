// Shared helpers of the multi-process pubsub tests: spawning fixture peers
// (test/fixtures/peer.ts), sending them commands, watching what they report, and /proc.
import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'vitest'
import type { TransportName } from '../src/index.ts'
import type { SubStats } from './fixtures/peer.ts'
import type { Counts } from './proc.ts'

export type { Counts, SubStats, TransportName }

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

/** Options of a fixture peer. */
export interface PeerOptions {
  /** connect()'s `transport` for this peer's node (its publishers); the default when unset. */
  transport?: TransportName
}

/** A fixture child process. */
export class Peer {
  readonly process: ChildProcess
  readonly label: string
  /** The transport its node publishes with (connect()'s default when undefined). */
  readonly transport: TransportName | undefined
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

  constructor(label: string, nodeArgs: string[] = [], options: PeerOptions = {}) {
    this.label = label
    this.transport = options.transport
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
  static async start(label: string, nodeArgs: string[] = [], options: PeerOptions = {}): Promise<Peer> {
    const peer = new Peer(label, nodeArgs, options)
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
    return this.request('connect', { domain, name, ...(this.transport ? { transport: this.transport } : {}) })
  }

  subscribe(
    topic: string,
    options: { policy?: string; queueSize?: number; maxHeld?: number; keep?: boolean; keepMinBytes?: number; delayMs?: number } = {},
  ): Promise<string> {
    return this.request('subscribe', { topic, ...options })
  }

  publisher(topic: string, options: { poolSize?: number } = {}): Promise<string> {
    return this.request('publisher', { topic, ...options })
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

  /** What each of its open fds is (sorted, inode numbers blanked): for failure messages. */
  fdTargets(): Promise<string[]> {
    return this.request('fd-targets')
  }

  /**
   * settleCounts() until its counts are `expected` (sameCounts); returns the last counts and,
   * for the assertion's message, how its fds differ from `baseline` (fdTargets() taken with
   * the counts `expected` derives from).
   */
  async settleTo(expected: Counts, baseline: readonly string[]): Promise<{ counts: Counts; fds: string }> {
    // Links close and mappings go asynchronously (a peer's close, a kill seen through a socket):
    // generous, since only a failure waits it out.
    const counts = await this.settleCounts((now) => sameCounts(now, expected), 10_000)
    return { counts, fds: sameCounts(counts, expected) ? '' : `${this.label}: ${fdDiff(baseline, await this.fdTargets())}` }
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

/** The same fds, memfd fds, memfd mappings and eventfds (what the data path can hold). */
export function sameCounts(a: Counts, b: Counts): boolean {
  return a.fds === b.fds && a.memfdFds === b.memfdFds && a.memfdMaps === b.memfdMaps && a.eventFds === b.eventFds
}

/**
 * `base` plus what a node holds of the pool transport: `pools` pools (its publishers' own, and
 * each remote publisher's pool it maps read-only: one memfd fd and one mapping each) and
 * `rings` pool links (at either end: the ring's fd and mapping, and two doorbell eventfds).
 */
export function plusPool(base: Counts, pools: number, rings: number): Counts {
  return {
    ...base,
    fds: base.fds + pools + rings * 3,
    memfdFds: base.memfdFds + pools + rings,
    memfdMaps: base.memfdMaps + pools + rings,
    poolFds: base.poolFds + pools,
    poolMaps: base.poolMaps + pools,
    ringFds: base.ringFds + rings,
    ringMaps: base.ringMaps + rings,
    eventFds: base.eventFds + rings * 2,
  }
}

/** Counts in one line, for logs. */
export function brief(counts: Counts): string {
  return (
    `fds ${counts.fds}, memfd ${counts.memfdFds}/${counts.memfdMaps} (segment ${counts.segmentFds}/${counts.segmentMaps}, ` +
    `pool ${counts.poolFds}/${counts.poolMaps}, ring ${counts.ringFds}/${counts.ringMaps}), eventfd ${counts.eventFds}`
  )
}

/** What the topology's hub thread calls itself (/proc/<pid>/task/<tid>/comm). */
const HUB_THREAD_NAME = 'ipc-pubsub-hub'
// Whether the topology package in use runs hubs on threads of their own (it ships the worker).
const topologyHubThreads = existsSync(join(packageDir, 'node_modules', '@ipc-pubsub', 'topology', 'dist', 'hub-worker.js'))

/** The topology's hub threads (running a hub, or standing by) in process `pid`. */
export function hubThreads(pid: number): number {
  let count = 0
  let tasks: string[]
  try {
    tasks = readdirSync(`/proc/${pid}/task`)
  } catch {
    return 0
  }
  for (const task of tasks) {
    try {
      if (readFileSync(`/proc/${pid}/task/${task}/comm`, 'latin1').trim() === HUB_THREAD_NAME) count++
    } catch {
      // The thread ended meanwhile.
    }
  }
  return count
}

/**
 * Waits until the topology's hub threads are up in `pids`, the processes of one domain's
 * nodes: where the topology runs its hub on a thread, the hub's process has one, and the
 * hub's successor (the oldest node in another process) starts one to stand by half a second
 * after it became the successor. Each brings fds of its own (an event loop's, an eventfd
 * among them) and costs CPU to start: fd baselines and idle measurements of the data path
 * are taken once they are up.
 */
export async function hubThreadsUp(pids: readonly number[], timeoutMs = 15_000): Promise<void> {
  if (!topologyHubThreads) return
  const unique = [...new Set(pids)]
  const want = Math.min(2, unique.length)
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const have = unique.reduce((sum, pid) => sum + hubThreads(pid), 0)
    if (have >= want) return
    if (Date.now() > deadline) throw new Error(`${have} hub threads among processes ${unique.join(', ')} after ${timeoutMs} ms, expected ${want}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/** The fds in `after` and not in `before`, and the other way round (fdTargets() lists): for failure messages. */
export function fdDiff(before: readonly string[], after: readonly string[]): string {
  const minus = (a: readonly string[], b: readonly string[]): string[] => {
    const rest = [...b]
    return a.filter((item) => {
      const index = rest.indexOf(item)
      if (index < 0) return true
      rest.splice(index, 1)
      return false
    })
  }
  return `extra fds: [${minus(after, before).join(', ')}], missing fds: [${minus(before, after).join(', ')}]`
}

/** Waits until `peer` holds `expected` (Peer.settleTo) and asserts it, naming the fds that differ from `baseline` if not. */
export async function expectSettled(peer: Peer, expected: Counts, baseline: readonly string[]): Promise<Counts> {
  const { counts, fds } = await peer.settleTo(expected, baseline)
  expect(counts, fds).toEqual(expected)
  return counts
}
