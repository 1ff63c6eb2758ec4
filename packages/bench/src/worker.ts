// A bench worker process: the publisher or a subscriber of one run, or the micro-cost
// worker. Started by the coordinator (cli) with its Job as JSON in argv[2]; a child_process
// publisher starts its subscribers the same way. Everything it reports goes over the control
// socket; a failure is reported there and ends the process with a non-zero code.
import { readFileSync } from 'node:fs'
import { ControlSocket } from './control.js'
import type { CoordinatorMessage, Job, WorkerMessage } from './job.js'
import { runEcho, runMicro } from './micro.js'
import { pinToCpu } from './native.js'
import { stamp, verify } from './payload.js'
import { loadTransport } from './transports/index.js'
import type { Handler, SubscriberSide } from './transports/types.js'

type Control = ControlSocket<CoordinatorMessage, WorkerMessage>

const job = JSON.parse(process.argv[2] ?? 'null') as Job | null
if (job === null || typeof job !== 'object') {
  process.stderr.write('usage: worker.js <job as JSON> (started by the bench, not by hand)\n')
  process.exit(2)
}

const cpu = job.role === 'pub' || job.role === 'micro' ? job.placement.publisher : job.placement.subscriber
if (cpu !== null) pinToCpu(cpu)
// The micro worker's echo peer talks to its parent only, not to the coordinator.
if (job.role === 'echo') {
  await runEcho(job)
  await new Promise(() => {})
}

const control: Control = await ControlSocket.connect(job.control)
let finished = false
// The coordinator went away: nobody will read our results, so stop (and free the CPU).
control.socket.on('close', () => {
  if (!finished) process.exit(3)
})
control.send({ type: 'hello', id: job.id, pid: process.pid })

/** Reports a failure to the coordinator (so the run shows its cause) and ends the process. */
const crash = (error: unknown): void => {
  finished = true
  control.send({ type: 'error', message: `${job.id} (${job.transport}): ${(error as Error)?.stack ?? error}` })
  control.end().then(
    () => process.exit(1),
    () => process.exit(1),
  )
}
// A throw in a transport's event handler (a socket's 'data', a receive loop) lands here, not in
// the try below.
process.on('uncaughtException', crash)
process.on('unhandledRejection', crash)

try {
  if (job.role === 'micro') await micro(job, control)
  else if (job.role === 'pub') await publisher(job, control)
  else await subscriber(job, control)
  finished = true
  await control.end()
} catch (error) {
  crash(error)
}

/**
 * Peak resident set of this process, KiB: VmHWM from /proc/self/status. Not ru_maxrss, which
 * a child inherits from its parent across fork+exec (every worker would report at least the
 * coordinator's peak); VmHWM starts afresh at exec.
 */
function peakRssKiB(): number {
  const match = /^VmHWM:\s*(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'))
  if (!match) throw new Error('no VmHWM in /proc/self/status')
  return Number(match[1])
}

async function micro(job: Job, control: Control): Promise<void> {
  control.send({ type: 'micro', results: await runMicro(job) })
}

async function publisher(job: Job, control: Control): Promise<void> {
  const transport = await loadTransport(job.transport)
  const { kind, size, count, warmup, subscribers } = job.case
  const exit = control.next('exit')
  const go = control.next('go')
  // Both are awaited later; a closed channel must not become an unhandled rejection first.
  exit.catch(() => {})
  go.catch(() => {})

  let awaiting: Handler | null = null
  const onReply: Handler = (bytes, release) => {
    const handler = awaiting
    awaiting = null
    if (handler === null) {
      release()
      throw new Error('a reply arrived that nobody asked for')
    }
    handler(bytes, release)
  }
  const side = await transport.publisher(job, onReply, (index) => ({ ...job, id: job.id.replace(/pub$/, `sub${index}`), role: 'sub', index }))
  control.send({ type: 'ready' })
  await side.attached(subscribers)

  let seq = 0
  let verified = 0
  // A fresh buffer per message: some transports hold a reference until it is written out.
  const next = (): Uint8Array => stamp(Buffer.allocUnsafe(size), seq++)
  const send = async (): Promise<void> => {
    const wait = side.send(next())
    if (wait) await wait
  }

  if (kind === 'latency') {
    const samples: number[] = []
    for (let i = 0; i < warmup + count; i++) {
      const reply = new Promise<[Uint8Array, () => void]>((resolve) => {
        awaiting = (bytes, release) => resolve([bytes, release])
      })
      const message = next()
      const t0 = process.hrtime.bigint()
      const wait = side.send(message)
      if (wait) await wait
      const [echo, release] = await reply
      const t1 = process.hrtime.bigint()
      const check = verify(echo)
      release()
      if (typeof check === 'string') throw new Error(`reply ${i}: ${check}`)
      if (check.seq !== i) throw new Error(`reply ${i} carried message ${check.seq}`)
      verified++
      if (i >= warmup) samples.push(Number(t1 - t0) / 1000)
    }
    control.send({ type: 'latency', samples })
  } else {
    for (let i = 0; i < warmup; i++) await send()
    if (kind !== 'idle') {
      await go
      for (let i = 0; i < count; i++) await send()
      control.send({ type: 'sent' })
    }
  }
  await exit
  control.send({ type: 'bye', maxRssKiB: peakRssKiB(), verified })
  await side.close()
}

async function subscriber(job: Job, control: Control): Promise<void> {
  const transport = await loadTransport(job.transport)
  const { kind, count, warmup } = job.case
  const exit = control.next('exit')
  exit.catch(() => {})

  let failure: Error | null = null
  let failed!: (error: Error) => void
  const failedPromise = new Promise<never>((_, reject) => {
    failed = reject
  })
  failedPromise.catch(() => {})
  const fail = (error: Error): void => {
    if (failure) return
    failure = error
    failed(error)
  }

  let expected = 0
  let verified = 0
  let measured = 0
  let measuredBytes = 0
  let firstSentAt = 0n
  // Set once the transport is attached; a ping may arrive a moment before that.
  let side: SubscriberSide | null = null
  let attached!: (side: SubscriberSide) => void
  const sideReady = new Promise<SubscriberSide>((resolve) => {
    attached = resolve
  })

  const onMessage: Handler = (bytes, release) => {
    if (failure) return release()
    const check = verify(bytes)
    if (typeof check === 'string' || check.seq !== expected) {
      release()
      fail(new Error(typeof check === 'string' ? `message ${expected}: ${check}` : `expected message ${expected}, got ${check.seq}`))
      return
    }
    expected++
    verified++
    if (kind === 'latency') {
      let wait: void | Promise<void>
      try {
        wait = side === null ? sideReady.then((ready) => ready.reply(bytes)) : side.reply(bytes)
      } catch (error) {
        release()
        return fail(error as Error)
      }
      if (wait) {
        wait.then(release, (error: Error) => {
          release()
          fail(error)
        })
      } else release()
      return
    }
    const receivedAt = process.hrtime.bigint()
    release()
    if (check.seq === warmup - 1) control.send({ type: 'warm' })
    if (check.seq < warmup || kind === 'idle') return
    if (check.seq === warmup) firstSentAt = check.sentAt
    measured++
    measuredBytes += bytes.length
    if (measured === count) {
      control.send({
        type: 'received',
        messages: measured,
        bytes: measuredBytes,
        firstSentAt: firstSentAt.toString(),
        lastReceivedAt: receivedAt.toString(),
      })
    }
  }

  const ready = await transport.subscriber(job, onMessage)
  side = ready
  attached(ready)
  control.send({ type: 'ready' })
  await Promise.race([exit, failedPromise])
  control.send({ type: 'bye', maxRssKiB: peakRssKiB(), verified })
  await ready.close()
}
