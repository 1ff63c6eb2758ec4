// The coordinator: starts the worker processes of one run, drives them through set-up,
// warm-up and the measured part over the control socket, and collects what they measured.
// It never touches the transport under test itself.
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { ControlSocket } from './control.js'
import type { Case, CoordinatorMessage, Job, MicroResults, Placement, TransportId, WorkerMessage } from './job.js'
import { spawnsSubscribers } from './job.js'
import { clockTicksPerSecond } from './native.js'
import { type Summary, summarize } from './stats.js'

type Control = ControlSocket<WorkerMessage, CoordinatorMessage>

/** What one run (one transport, one case, one repeat) measured. */
export interface RunRecord {
  transport: TransportId
  kind: Case['kind']
  size: number
  repeat: number
  /** Round trips in microseconds (latency runs). */
  latency?: Summary
  /** Per subscriber, in subscriber order (throughput and fan-out runs). */
  throughput?: { msgsPerSec: number; mbPerSec: number }[]
  /** CPU % of one core over the idle window (idle runs). */
  idle?: { publisherCpuPercent: number; subscriberCpuPercent: number }
  /** Peak resident set of the publisher and of the largest subscriber, KiB. */
  peakRssKiB?: { publisher: number; subscriber: number }
  /** Messages whose content was verified, publisher and subscribers together. */
  verified?: number
  error?: string
}

export const WORKER = fileURLToPath(new URL('./worker.js', import.meta.url))

/** CPU time (user + system) of a process so far, in clock ticks, from /proc/<pid>/stat. */
export function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // The command name may hold spaces and parentheses: fields are counted after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // fields[0] is field 3 (state): utime is field 14, stime field 15.
  return Number(fields[11]) + Number(fields[12])
}

export interface CoordinatorOptions {
  placement: Placement
  /** Longest a run may take before its processes are killed and it counts as failed. */
  timeoutMs: number
  /** Length of the idle window. */
  idleMs: number
  /** A quick run (fewer micro-cost samples). */
  quick: boolean
}

let runs = 0

export class Coordinator {
  readonly #server: Server
  readonly address: string
  readonly #options: CoordinatorOptions
  #waiting = new Map<string, (control: Control) => void>()
  // Workers that said hello before anyone expected them (a child_process publisher forks its
  // subscribers while it sets up, so they can beat the coordinator's expect()).
  #arrived = new Map<string, Control>()

  private constructor(server: Server, address: string, options: CoordinatorOptions) {
    this.#server = server
    this.address = address
    this.#options = options
    server.on('connection', (socket) => {
      const control: Control = new ControlSocket(socket)
      control.next('hello').then(
        (hello) => {
          control.pid = hello.pid
          const waiter = this.#waiting.get(hello.id)
          if (waiter) waiter(control)
          else this.#arrived.set(hello.id, control)
        },
        () => socket.destroy(),
      )
    })
  }

  static async start(options: CoordinatorOptions): Promise<Coordinator> {
    const address = `\0ipc-pubsub-bench-${process.pid}`
    const server = createServer()
    server.listen(address)
    await once(server, 'listening')
    return new Coordinator(server, address, options)
  }

  /** Stops listening; drops workers nobody claimed (their runs are over). */
  async close(): Promise<void> {
    this.#server.close()
    for (const control of this.#arrived.values()) control.socket.destroy()
    this.#arrived.clear()
    this.#waiting.clear()
  }

  /** Runs one case for one transport. Never throws: a failure is the record's `error`. */
  async run(transport: TransportId, testCase: Case, repeat: number): Promise<RunRecord> {
    const record: RunRecord = { transport, kind: testCase.kind, size: testCase.size, repeat }
    const run = new Run(this, transport, testCase)
    // execute() fills its own copy: after a timeout it may still be running, and what it
    // finds then must not land in the record.
    const measured: RunRecord = { ...record }
    try {
      await withTimeout(run.execute(measured), this.#options.timeoutMs, `${testCase.kind} ${testCase.size} B over ${transport}`)
      Object.assign(record, measured)
    } catch (error) {
      record.error = (error as Error).message
    } finally {
      await run.dispose()
    }
    return record
  }

  /** Measures the micro-costs in a worker of their own. */
  async micro(): Promise<MicroResults> {
    // The micro worker measures on its own; the case only fills the job's shape.
    const testCase: Case = { kind: 'latency', size: 64, count: 1, warmup: 1, subscribers: 1 }
    const run = new Run(this, 'node:net', testCase)
    try {
      const control = await withTimeout(run.start('micro'), this.#options.timeoutMs, 'micro-costs')
      return (await withTimeout(control.next('micro'), this.#options.timeoutMs, 'micro-costs')).results
    } finally {
      await run.dispose()
    }
  }

  /** @internal */
  expect(id: string): Promise<Control> {
    const arrived = this.#arrived.get(id)
    if (arrived) {
      this.#arrived.delete(id)
      return Promise.resolve(arrived)
    }
    return new Promise((resolve) => this.#waiting.set(id, resolve))
  }

  /** @internal */
  forget(id: string): void {
    this.#waiting.delete(id)
    this.#arrived.get(id)?.socket.destroy()
    this.#arrived.delete(id)
  }

  /** @internal */
  get options(): CoordinatorOptions {
    return this.#options
  }
}

class Run {
  readonly #coordinator: Coordinator
  readonly #transport: TransportId
  readonly #case: Case
  readonly #name = `ipb-${process.pid}-${++runs}`
  readonly #children: ChildProcess[] = []
  readonly #controls = new Map<string, Control>()
  readonly #ids = new Set<string>()

  constructor(coordinator: Coordinator, transport: TransportId, testCase: Case) {
    this.#coordinator = coordinator
    this.#transport = transport
    this.#case = testCase
  }

  #job(role: Job['role'], index: number): Job {
    const id = role === 'sub' ? `sub${index}` : role
    return {
      id: `${this.#name}:${id}`,
      role,
      index,
      transport: this.#transport,
      case: this.#case,
      rendezvous: this.#name,
      control: this.#coordinator.address,
      placement: this.#coordinator.options.placement,
      quick: this.#coordinator.options.quick,
    }
  }

  /** Starts a worker and resolves with its control connection once it said hello. */
  async start(role: Job['role'], index = 0): Promise<Control> {
    const job = this.#job(role, index)
    const control = this.#expect(job.id)
    const child = spawn(process.execPath, [WORKER, JSON.stringify(job)], { stdio: ['ignore', 'inherit', 'inherit'] })
    this.#children.push(child)
    // once() rejects on 'error' (the spawn itself failed: EAGAIN, EMFILE), which fails the run.
    const exited = once(child, 'exit').then(([code, signal]) => {
      throw new Error(`${job.id} exited (${signal ?? code}) before it said hello`)
    })
    exited.catch(() => {})
    return Promise.race([control, exited])
  }

  async #expect(id: string): Promise<Control> {
    this.#ids.add(id)
    const control = await this.#coordinator.expect(id)
    this.#coordinator.forget(id)
    this.#controls.set(id, control)
    return control
  }

  async execute(record: RunRecord): Promise<void> {
    const { kind, subscribers } = this.#case
    const pub = await this.start('pub')
    await pub.next('ready')
    const subs: Control[] = []
    if (spawnsSubscribers(this.#transport)) {
      // The publisher forks them; they still report here.
      const expected: Promise<Control>[] = []
      for (let index = 0; index < subscribers; index++) expected.push(this.#expect(this.#job('sub', index).id))
      subs.push(...(await raceErrors(Promise.all(expected), pub)))
    } else {
      for (let index = 0; index < subscribers; index++) subs.push(await this.start('sub', index))
    }
    await Promise.all(subs.map((sub) => raceErrors(sub.next('ready'), pub)))

    if (kind === 'latency') {
      record.latency = summarize((await raceErrors(pub.next('latency'), ...subs)).samples)
    } else if (kind === 'idle') {
      await Promise.all(subs.map((sub) => raceErrors(sub.next('warm'), pub)))
      // Let the last credits and acknowledgements settle, then measure a quiet window.
      await sleep(500)
      const pids = [pub.pid, ...subs.map((sub) => sub.pid)]
      const before = pids.map(cpuTicks)
      const t0 = process.hrtime.bigint()
      await sleep(this.#coordinator.options.idleMs)
      const after = pids.map(cpuTicks)
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9
      const percent = pids.map((_, i) => ((after[i]! - before[i]!) / clockTicksPerSecond() / seconds) * 100)
      record.idle = { publisherCpuPercent: percent[0]!, subscriberCpuPercent: Math.max(...percent.slice(1)) }
    } else {
      await Promise.all(subs.map((sub) => raceErrors(sub.next('warm'), pub)))
      pub.send({ type: 'go' })
      const received = await Promise.all(subs.map((sub) => raceErrors(sub.next('received'), pub)))
      await raceErrors(pub.next('sent'), ...subs)
      record.throughput = received.map((r) => {
        const seconds = Number(BigInt(r.lastReceivedAt) - BigInt(r.firstSentAt)) / 1e9
        return { msgsPerSec: r.messages / seconds, mbPerSec: r.bytes / 1e6 / seconds }
      })
    }

    for (const control of [pub, ...subs]) control.send({ type: 'exit' })
    const byes = await Promise.all([pub, ...subs].map((control) => control.next('bye')))
    record.peakRssKiB = { publisher: byes[0]!.maxRssKiB, subscriber: Math.max(...byes.slice(1).map((b) => b.maxRssKiB)) }
    record.verified = byes.reduce((sum, b) => sum + b.verified, 0)
    const expected = expectedVerified(this.#case)
    if (record.verified !== expected) throw new Error(`${record.verified} messages were verified, not ${expected}`)
    await Promise.all(this.#children.map(exitOf))
  }

  /** Ends every process of the run: politely if it is done, with SIGKILL after a grace period. */
  async dispose(): Promise<void> {
    for (const control of this.#controls.values()) control.send({ type: 'exit' })
    const exited = Promise.all(this.#children.map(exitOf))
    const grace = new AbortController()
    const late = await Promise.race([exited.then(() => false), sleep(3000, true, { signal: grace.signal })])
    grace.abort()
    if (late) {
      // Our children by handle; a child_process publisher's subscribers by the pid they said
      // hello with (they are alive: their control sockets are still open, see below).
      for (const child of this.#children) child.kill('SIGKILL')
      for (const control of this.#controls.values()) {
        if (control.closed || control.pid === 0) continue
        try {
          process.kill(control.pid, 'SIGKILL')
        } catch {
          // Already gone.
        }
      }
    }
    await exited
    // A worker whose control socket closes exits by itself (worker.ts), grandchildren included.
    for (const control of this.#controls.values()) control.socket.destroy()
    for (const id of this.#ids) this.#coordinator.forget(id)
  }
}

/**
 * Messages a run's processes verify between them. Latency: the subscriber checks each ping and
 * the publisher each echo. Throughput and fan-out: each subscriber checks warm-up and measured
 * messages. Idle: each subscriber checks the warm-up.
 */
export function expectedVerified(c: Case): number {
  if (c.kind === 'latency') return 2 * (c.warmup + c.count)
  if (c.kind === 'idle') return c.subscribers * c.warmup
  return c.subscribers * (c.warmup + c.count)
}

function exitOf(child: ChildProcess): Promise<unknown> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return once(child, 'exit')
}

/** Resolves with `promise`, or rejects as soon as any other worker reports an error or dies. */
function raceErrors<T>(promise: Promise<T>, ...others: Control[]): Promise<T> {
  return Promise.race([promise, ...others.map((other) => other.broken())])
}

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms / 1000} s`)), ms)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}
