// Shared helpers of the multi-process topology tests: spawning fixture nodes and talking to
// them over IPC, reading their change logs, and looking at /proc.
import { type ChildProcess, type SpawnOptions, spawn } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { NodeConfig } from './fixtures/node.ts'

export type { NodeConfig }

export const packageDir = join(dirname(fileURLToPath(import.meta.url)), '..')
export const nodeFixture = join(packageDir, 'test', 'fixtures', 'node.ts')

/** CLOCK_MONOTONIC in ns: the clock the fixture children stamp their messages with. */
export const monotonic = (): bigint => process.hrtime.bigint()

/** ns -> ms */
export const ms = (ns: bigint): number => Number(ns) / 1e6

let counter = 0
/** A domain name no other test run uses (also the needle for /proc/net/unix). */
export function uniqueDomain(tag: string): string {
  return `tt-${tag}-${process.pid}-${++counter}-${Math.random().toString(36).slice(2, 8)}`
}

/** One change as the fixture forwards it. */
export interface ChangeSummary {
  type: 'node-up' | 'node-down' | 'endpoint-up' | 'endpoint-down'
  node: string
  endpoint?: string
  reason?: string
  name?: string
  pid?: number
}

export interface HubSummary {
  id: string
  epoch: number
  self: boolean
}

export type LogEntry =
  | { type: 'change'; t: bigint; change: ChangeSummary }
  | { type: 'hub'; t: bigint; hub: HubSummary }
  | { type: 'rejoin'; t: bigint; previous: string; id: string }
  | { type: 'error'; t: bigint; code: string | null; message: string }

export interface Snapshot {
  id: string | null
  isHub: boolean
  hub: HubSummary | null
  nodes: { id: string; endpoints: string[] }[]
  historyLength: number
}

export interface JoinResult {
  id: string
  /** hrtime when join() resolved in the child. */
  t: bigint
  initialHistory: number
  endpoints: string[]
  snapshot: Snapshot
}

/** How a `try-join` command ended (the child's own clock; `t`: hrtime ns when it settled). */
export interface TryJoinResult {
  ok: boolean
  ms: number
  t: string
  id?: string
  isHub?: boolean
  code?: string | null
  hubPid?: number | null
  message?: string
}

export interface Counts {
  fds: number
  sockets: number
  baseline: { fds: number; sockets: number }
}

interface Raw {
  type: string
  [key: string]: unknown
}

const live = new Set<NodeProcess>()

/** A fixture child (test/fixtures/node.ts) with its change log and a command channel. */
export class NodeProcess {
  readonly process: ChildProcess
  readonly label: string
  /** Changes, hub events, rejoins and errors, in the order the child reported them. */
  readonly log: LogEntry[] = []
  /** The fd/socket counts the child took before joining. */
  readonly ready: Promise<{ pid: number; fds: number; sockets: number }>
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  /** The node id of the current client (set by join()). */
  id: string | undefined
  #stderr = ''
  #seq = 0
  readonly #pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>()
  readonly #watchers = new Set<() => void>()
  #exit: { code: number | null; signal: NodeJS.Signals | null } | undefined
  #joinedMessage: Promise<Raw>

  constructor(label: string, config: NodeConfig | undefined, options: SpawnOptions) {
    this.label = label
    const args = ['--import', 'tsx', nodeFixture]
    if (config !== undefined) args.push(JSON.stringify(config))
    this.process = spawn(process.execPath, args, { cwd: packageDir, stdio: ['ignore', 'inherit', 'pipe', 'ipc'], ...options })
    live.add(this)
    this.process.stderr?.setEncoding('utf8')
    this.process.stderr?.on('data', (chunk: string) => {
      this.#stderr += chunk
    })
    let onReady!: (value: { pid: number; fds: number; sockets: number }) => void
    this.ready = new Promise((resolve) => {
      onReady = resolve
    })
    let onJoined!: (value: Raw) => void
    let onJoinFailed!: (error: Error) => void
    this.#joinedMessage = new Promise((resolve, reject) => {
      onJoined = resolve
      onJoinFailed = reject
    })
    // Only joined() awaits it: a child that never joins must not be an unhandled rejection.
    this.#joinedMessage.catch(() => {})
    this.process.on('message', (raw) => {
      const message = raw as Raw
      switch (message.type) {
        case 'ready':
          onReady(message as unknown as { pid: number; fds: number; sockets: number })
          break
        case 'joined':
          onJoined(message)
          break
        case 'reply': {
          const pending = this.#pending.get(message.seq as number)
          if (pending === undefined) break
          this.#pending.delete(message.seq as number)
          if (message.ok) pending.resolve(message.value)
          else pending.reject(new Error(`${this.label}: ${String(message.error)}`))
          break
        }
        default:
          this.log.push({ ...message, t: BigInt(message.t as string) } as LogEntry)
      }
      for (const watcher of [...this.#watchers]) watcher()
    })
    this.exited = new Promise((resolve) => {
      this.process.on('exit', (code, signal) => {
        this.#exit = { code, signal }
        live.delete(this)
        resolve({ code, signal })
        const error = new Error(`${this.label} exited (${code ?? signal}); stderr: ${this.#stderr}`)
        onJoinFailed(error)
        for (const pending of this.#pending.values()) pending.reject(error)
        this.#pending.clear()
        for (const watcher of [...this.#watchers]) watcher()
      })
      this.process.on('error', (error) => {
        this.#stderr += `spawn failed: ${error.message}`
      })
    })
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

  /** Sends a command and resolves with the child's answer. */
  request<T>(cmd: string, args: Record<string, unknown> = {}, timeoutMs = 20_000): Promise<T> {
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

  async join(config: NodeConfig): Promise<JoinResult> {
    const value = await this.request<Omit<JoinResult, 't'> & { t: string }>('join', { config })
    this.id = value.id
    return { ...value, t: BigInt(value.t) }
  }

  /** The result of the join the child did on its own (config given at spawn). */
  async joined(): Promise<JoinResult> {
    const value = (await this.#joinedMessage) as unknown as Omit<JoinResult, 't'> & { t: string }
    this.id = value.id
    return { ...value, t: BigInt(value.t) }
  }

  snapshot(): Promise<Snapshot> {
    return this.request<Snapshot>('snapshot')
  }

  addEndpoint(topic: string, role: 'publisher' | 'subscriber' = 'publisher'): Promise<string> {
    return this.request<string>('add-endpoint', { topic, role })
  }

  async removeEndpoint(id: string): Promise<{ t: bigint; removed: boolean }> {
    const value = await this.request<{ t: string; removed: boolean }>('remove-endpoint', { id })
    return { t: BigInt(value.t), removed: value.removed }
  }

  /** Graceful close() of the client; resolves with the time taken just before it. */
  async close(): Promise<bigint> {
    const value = await this.request<{ t: string }>('close')
    return BigInt(value.t)
  }

  async destroyClient(): Promise<bigint> {
    const value = await this.request<{ t: string }>('destroy')
    return BigInt(value.t)
  }

  /** process.exit() in the child; resolves with the time it took just before. */
  async exit(): Promise<bigint> {
    const value = await this.request<{ t: string }>('exit')
    return BigInt(value.t)
  }

  /**
   * fd/socket counts; with settle, after waiting (up to 3 s) for them to come down to the
   * pre-join baseline, or to `target`.
   */
  counts(settle = true, target?: { fds: number; sockets: number }): Promise<Counts> {
    return this.request<Counts>('fds', { settle, target })
  }

  /** SIGKILL; returns the monotonic time taken just before the signal. */
  kill(): bigint {
    const t = monotonic()
    this.process.kill('SIGKILL')
    return t
  }

  /** Changes only. */
  changes(): { t: bigint; change: ChangeSummary }[] {
    const list: { t: bigint; change: ChangeSummary }[] = []
    for (const entry of this.log) if (entry.type === 'change') list.push(entry)
    return list
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
        } else if (this.#exit !== undefined) {
          clearTimeout(timer)
          this.#watchers.delete(check)
          reject(new Error(`${this.label} exited while waiting for ${what}; stderr: ${this.#stderr}`))
        }
      }
      this.#watchers.add(check)
    })
  }

  /** Waits for a change matching `match` that was logged at or after log index `from`. */
  async waitForChange(match: (change: ChangeSummary) => boolean, what: string, from = 0, timeoutMs = 10_000) {
    let found: { t: bigint; change: ChangeSummary } | undefined
    await this.waitFor(
      () => {
        for (let i = from; i < this.log.length; i++) {
          const entry = this.log[i] as LogEntry
          if (entry.type === 'change' && match(entry.change)) {
            found = entry
            return true
          }
        }
        return false
      },
      what,
      timeoutMs,
    )
    return found as { t: bigint; change: ChangeSummary }
  }

  /** Ends the process (SIGKILL unless it already exited) and waits for it. */
  async stop(): Promise<void> {
    if (this.#exit === undefined) this.process.kill('SIGKILL')
    await this.exited
  }
}

/** Spawns `node --import tsx test/fixtures/node.ts [config]`. */
export function spawnNode(label: string, config?: NodeConfig, options: SpawnOptions = {}): NodeProcess {
  return new NodeProcess(label, config, options)
}

/** Kills every fixture child still running (afterAll / afterEach safety net). */
export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((node) => node.stop()))
}

/** Lines of /proc/net/unix whose path contains `needle` (bound, listening or accepted sockets). */
export function unixSocketsMatching(needle: string): string[] {
  return readFileSync('/proc/net/unix', 'latin1')
    .split('\n')
    .slice(1)
    .filter((line) => line.includes(needle))
}

/** The name the hub thread gives itself (src/hub-worker.ts). */
const HUB_THREAD_NAME = 'ipc-pubsub-hub'

/** How many hub threads (running a hub, or standing by) process `pid` has. */
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
      // the thread ended meanwhile
    }
  }
  return count
}

/**
 * Waits until process `pid` has a hub thread: the successor of a hub (the oldest other node)
 * keeps one standing by from the moment it becomes the successor, so that a failover does not
 * wait for a thread to start. A failover measured before it is up measures that start.
 */
export async function hubThreadUp(pid: number, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (hubThreads(pid) === 0) {
    if (Date.now() > deadline) throw new Error(`process ${pid} has no hub thread after ${timeoutMs} ms`)
    await sleep(10)
  }
}

/** A snapshot reduced to what must agree across nodes: hub, node ids with endpoint ids. */
export function stateKey(snapshot: Snapshot): string {
  const nodes = snapshot.nodes.map(({ id, endpoints }) => `${id}[${[...endpoints].sort().join(',')}]`).sort()
  return JSON.stringify({ hub: snapshot.hub ? [snapshot.hub.id, snapshot.hub.epoch] : null, nodes })
}

/** The same key built from the expected model. */
export function expectedKey(hub: { id: string; epoch: number } | null, nodes: Map<string, Set<string>>): string {
  const list = [...nodes].map(([id, endpoints]) => `${id}[${[...endpoints].sort().join(',')}]`).sort()
  return JSON.stringify({ hub: hub ? [hub.id, hub.epoch] : null, nodes: list })
}

export const sleep = (msDelay: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, msDelay))

/**
 * Checks one node's change log for exactly-once delivery: each node id up at most once and
 * down at most once (after its up), each endpoint up at most once (while its node is up) and
 * down at most once (after its up). Returns the problems found (empty: fine).
 */
export function logProblems(entries: readonly { change: ChangeSummary }[]): string[] {
  const problems: string[] = []
  const nodeState = new Map<string, 'up' | 'down'>()
  const endpointState = new Map<string, 'up' | 'down'>()
  for (const { change } of entries) {
    switch (change.type) {
      case 'node-up':
        if (nodeState.has(change.node)) problems.push(`node-up of ${change.node} while ${nodeState.get(change.node)}`)
        nodeState.set(change.node, 'up')
        break
      case 'node-down':
        if (nodeState.get(change.node) !== 'up') problems.push(`node-down of ${change.node} while ${nodeState.get(change.node) ?? 'unknown'}`)
        nodeState.set(change.node, 'down')
        break
      case 'endpoint-up': {
        const endpoint = change.endpoint as string
        if (endpointState.has(endpoint)) problems.push(`endpoint-up of ${endpoint} while ${endpointState.get(endpoint)}`)
        if (nodeState.get(change.node) !== 'up') problems.push(`endpoint-up of ${endpoint} while its node is ${nodeState.get(change.node) ?? 'unknown'}`)
        endpointState.set(endpoint, 'up')
        break
      }
      case 'endpoint-down': {
        const endpoint = change.endpoint as string
        if (endpointState.get(endpoint) !== 'up') problems.push(`endpoint-down of ${endpoint} while ${endpointState.get(endpoint) ?? 'unknown'}`)
        endpointState.set(endpoint, 'down')
        break
      }
    }
  }
  return problems
}

/** How often each (type, id) pair occurs in a log: `node-up:<id>`, `endpoint-down:<id>`, ... */
export function occurrences(entries: readonly { change: ChangeSummary }[]): Map<string, number> {
  const map = new Map<string, number>()
  for (const { change } of entries) {
    const key = `${change.type}:${change.endpoint ?? change.node}`
    map.set(key, (map.get(key) ?? 0) + 1)
  }
  return map
}

/** Median and max of a list of numbers. */
export function stats(values: readonly number[]): { median: number; max: number; count: number } {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  const median = sorted.length === 0 ? Number.NaN : sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
  return { median, max: sorted.at(-1) ?? Number.NaN, count: sorted.length }
}

/**
 * A node that rejoined under a new id was declared gone by a hub while it was alive: none of
 * these tests expects that, so waiting for agreement stops at once with the node's story
 * (its rejoin and the errors it reported, e.g. ERR_TOPOLOGY_UNTRUSTED_HUB).
 */
export function rejoinProblem(nodes: readonly NodeProcess[]): string | undefined {
  for (const node of nodes) {
    const rejoin = node.log.find((entry) => entry.type === 'rejoin')
    if (rejoin === undefined) continue
    const story = node.log
      .filter((entry) => entry.type === 'rejoin' || entry.type === 'error')
      .map((entry) => (entry.type === 'error' ? `error ${entry.code}: ${entry.message}` : `rejoin ${entry.previous} -> ${entry.id}`))
    return `${node.label} was declared gone while alive and rejoined under a new id: ${story.join('; ')}`
  }
  return undefined
}

/**
 * Polls the snapshots of `nodes` until they all show the same non-null hub and the same node
 * ids (and endpoint ids); with `ids`, exactly those nodes; and `also` holds. Returns the snapshots.
 */
export async function agreed(
  nodes: readonly NodeProcess[],
  ids?: readonly string[],
  also: (snapshot: Snapshot) => boolean = () => true,
  timeoutMs = 10_000,
): Promise<Snapshot[]> {
  const deadline = Date.now() + timeoutMs
  const want = ids === undefined ? undefined : JSON.stringify([...ids].sort())
  for (;;) {
    const snapshots = await Promise.all(nodes.map((node) => node.snapshot()))
    const keys = new Set(snapshots.map(stateKey))
    const first = snapshots[0]
    if (
      keys.size === 1 &&
      first?.hub != null &&
      (want === undefined || JSON.stringify(first.nodes.map((node) => node.id).sort()) === want) &&
      also(first)
    ) {
      return snapshots
    }
    const problem = rejoinProblem(nodes)
    if (problem !== undefined) throw new Error(problem)
    if (Date.now() > deadline) {
      throw new Error(`no agreement within ${timeoutMs} ms${want ? ` on ${want}` : ''}:\n${[...keys].join('\n')}`)
    }
    await sleep(10)
  }
}
