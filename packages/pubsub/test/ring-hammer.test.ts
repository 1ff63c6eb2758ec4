// Two processes hammer one ring (src/ring.ts) in a memfd: V8 gives Atomics on a non-shared
// buffer (a koffi view of a shared mapping) sequentially consistent semantics on x64, but the
// spec does not promise it, so this checks that two processes stay exact. Small capacities
// (16/16) and indices started just below 2^32 make both rings wrap all the time; every entry
// carries a checksum and is released by a completion the other side checks in turn.
// With both sides sleeping (ring sleep() + an eventfd doorbell), a lost wake-up would leave
// both asleep: the deadline below turns that into a failure that says so. With both sides
// spinning, nothing sleeps and the memory ordering alone keeps the entries intact.
import { type ChildProcess, spawn } from 'node:child_process'
import { join } from 'node:path'
import { Doorbell } from '@ipc-pubsub/fdpass'
import { Segment } from '@ipc-pubsub/shm'
import { afterEach, describe, expect, it } from 'vitest'
import { RingPublisherEnd, RingSubscriberEnd, ringBytes } from '../src/ring.ts'
import { type Mode, type Role, type RoleResult, runPublisher, runSubscriber } from './fixtures/ring-roles.ts'
import { packageDir } from './helpers.ts'

const fixture = join(packageDir, 'test', 'fixtures', 'ring-peer.ts')
const S = 16
const C = 16
// Between C and S + C: the subscriber sometimes commits slots without a completion and
// sometimes waits for completion room, so every wake-up path is taken.
const HOLD = 24
const START = 2 ** 32 - 1000
// Random work (µs) before each sleep(), so the other side's stores race with it often.
const JITTER_US = 20
const N = 200_000
// Spinning sides need both cores: on a loaded 2-core machine a descheduled spinner stalls the
// other, so the spin variant moves fewer entries (it still wraps both rings ~3,000 times).
const N_SPIN = 50_000
// Not a performance bound: only how long to wait before calling it a hang (lost wake-up).
// A run takes a few seconds here even on a loaded 2-core machine.
const DEADLINE_MS = 60_000

const children = new Set<ChildProcess>()
afterEach(() => {
  for (const child of children) child.kill('SIGKILL')
  children.clear()
})

interface Outcome {
  n: number
  per: number
  parent: RoleResult
  child: RoleResult
  ms: number
}

interface Setup {
  /** Which end runs in this process (the other runs in the child). */
  parentRole: 'publisher' | 'subscriber'
  publisherMode: Mode
  subscriberMode: Mode
  n: number
  /** Entries per completion (see RoleOptions.per). */
  per?: number
}

async function hammer({ parentRole, publisherMode, subscriberMode, n, per = 1 }: Setup): Promise<Outcome> {
  const childRole = parentRole === 'publisher' ? 'subscriber' : 'publisher'
  const segment = Segment.create(ringBytes(S, C), { name: 'ring-hammer' })
  // The child must not be able to shrink it under our mapping (nor we under its).
  segment.seal('shrink', 'grow')
  const subscriberBell = Doorbell.create()
  const publisherBell = Doorbell.create()
  const options = { n, per, hold: per === 1 ? HOLD : 2 * per, jitterUs: JITTER_US }
  const modes = { publisher: publisherMode, subscriber: subscriberMode }
  // The publishing end formats the ring before the other end opens it (never again after:
  // that would clear a flag the other end may have set).
  const publisherEnd = parentRole === 'publisher' ? RingPublisherEnd.format(segment.buffer, 0, S, C, START) : undefined
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', fixture, JSON.stringify({ role: childRole, submissions: S, completions: C, start: START, ...options, mode: modes[childRole] })],
    { cwd: packageDir, stdio: ['ignore', 'inherit', 'inherit', segment.fd, subscriberBell.fd, publisherBell.fd, 'ipc'] },
  )
  children.add(child)
  let role: Role | undefined
  let timer: NodeJS.Timeout | undefined
  try {
    const messages: { type: string; [key: string]: unknown }[] = []
    let onMessage = () => {}
    child.on('message', (message) => {
      messages.push(message as { type: string })
      onMessage()
    })
    const exited = new Promise<never>((_, reject) =>
      child.on('exit', (code, signal) => {
        const error = messages.find((m) => m.type === 'error')
        reject(new Error(`the ${childRole} child exited (${code ?? signal})${error ? `: ${error.message}` : ''}`))
      }),
    )
    const next = (type: string) =>
      Promise.race([
        exited,
        new Promise<{ type: string; [key: string]: unknown }>((resolve, reject) => {
          onMessage = () => {
            const error = messages.find((m) => m.type === 'error')
            if (error) reject(new Error(`the ${childRole} child: ${error.message}`))
            const found = messages.find((m) => m.type === type)
            if (found) resolve(found)
          }
          onMessage()
        }),
      ])
    await next('ready')
    // The child's ring is formatted (when it publishes) or opened: start our end.
    role =
      publisherEnd !== undefined
        ? runPublisher(publisherEnd, publisherBell, subscriberBell, { ...options, mode: publisherMode })
        : runSubscriber(RingSubscriberEnd.open(segment.buffer), subscriberBell, publisherBell, { ...options, mode: subscriberMode })
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(async () => {
        const words = new Int32Array(segment.buffer, 0, 128)
        const header = `subTail ${words[16]! >>> 0}, subHead ${words[32]! >>> 0}, subSleeping ${words[48]}, compTail ${words[64]! >>> 0}, compHead ${words[80]! >>> 0}, pubSleeping ${words[96]}`
        child.send({ type: 'state' })
        const state = await Promise.race([next('state'), new Promise((resolve) => setTimeout(resolve, 2000))])
        reject(
          new Error(
            `lost wake-up? not done after ${DEADLINE_MS} ms (publisher ${publisherMode}s, subscriber ${subscriberMode}s). ${role?.state()}; child: ${
              (state as { state?: string } | undefined)?.state ?? 'no answer'
            }; ring: ${header}`,
          ),
        )
      }, DEADLINE_MS)
    })
    const parentResult = await Promise.race([role.done, deadline, exited])
    const childResult = (await Promise.race([next('result'), deadline])).result as RoleResult
    // From our end's start: the child's start-up (tsx) is not the ring's.
    return { n, per, parent: parentResult, child: childResult, ms: parentResult.ms }
  } finally {
    clearTimeout(timer)
    role?.stop()
    // A child that has not exited by now is killed by afterEach.
    subscriberBell.close()
    publisherBell.close()
    segment.close()
  }
}

function report(title: string, { n, parent, child, ms }: Outcome, parentRole: 'publisher' | 'subscriber'): void {
  const [pub, sub] = parentRole === 'publisher' ? [parent, child] : [child, parent]
  // For the log only: rates vary a lot on a shared machine and are not asserted.
  console.log(
    `ring hammer, ${title}: ${n} entries in ${ms.toFixed(0)} ms = ${Math.round((n / ms) * 1000).toLocaleString('en')} entries/s; ` +
      `publisher slept ${pub.sleeps}x (woken ${pub.wakes}x, rang ${pub.rings}x), subscriber slept ${sub.sleeps}x (woken ${sub.wakes}x, rang ${sub.rings}x)`,
  )
}

function expectExact({ n, per, parent, child }: Outcome): void {
  // Each side checked every entry or completion it read, in order (it throws otherwise):
  // here the counts, both ways.
  for (const result of [parent, child]) {
    expect(result.entries).toBe(n)
    expect(result.completions).toBe(n / per)
  }
}

describe('ring hammer: two processes, one ring', () => {
  it('both sides sleep when idle: every entry and completion arrives exactly once, no lost wake-up', async () => {
    const outcome = await hammer({ parentRole: 'publisher', publisherMode: 'sleep', subscriberMode: 'sleep', n: N })
    report('publisher in the parent, both sleep', outcome, 'publisher')
    expectExact(outcome)
    // They did sleep and wake each other (else this would be the spin test).
    expect(outcome.parent.sleeps + outcome.child.sleeps).toBeGreaterThan(0)
    expect(outcome.parent.wakes + outcome.child.wakes).toBeGreaterThan(0)
  }, 90_000)

  it('the same with the publisher in the child', async () => {
    const outcome = await hammer({ parentRole: 'subscriber', publisherMode: 'sleep', subscriberMode: 'sleep', n: N })
    report('publisher in the child, both sleep', outcome, 'subscriber')
    expectExact(outcome)
  }, 90_000)

  // Completions as rare as credits (one per 64 entries, 4 ring-fulls) and a subscriber that
  // spins, so its commits race with the publisher's sleep: the publisher waiting for
  // submission room is woken by commits alone, announced by publishCompletions(). Before the
  // publisher's sleep() re-checked subHead, this hung (lost wake-up) within the first second.
  it('a publisher waiting for room is woken by commits alone, not only by completions', async () => {
    const outcome = await hammer({ parentRole: 'publisher', publisherMode: 'sleep', subscriberMode: 'spin', n: N, per: 64 })
    report('one completion per 64 entries, publisher sleeps, subscriber spins', outcome, 'publisher')
    expectExact(outcome)
  }, 90_000)

  it('both sides spin, never sleep: the memory ordering alone keeps every entry exact', async () => {
    const outcome = await hammer({ parentRole: 'publisher', publisherMode: 'spin', subscriberMode: 'spin', n: N_SPIN })
    report('publisher in the parent, both spin', outcome, 'publisher')
    expectExact(outcome)
    expect(outcome.parent.sleeps + outcome.child.sleeps).toBe(0)
  }, 90_000)
})
