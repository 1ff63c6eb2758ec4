// The ipc-pubsub demo (`pnpm start`): a camera process streams 1 MiB frames at 30 Hz to two
// viewer processes over shared memory, on the default domain. Halfway through, the process
// holding the topology hub is killed with SIGKILL: frames keep flowing while the others elect
// a new hub. viewer-2 is slow on purpose (40 ms of "work" per frame, so at most ~25 fps): its
// queue drops the oldest frames and `msg.lost` counts them. Ends by itself in ~13 s.
//
// Run: node packages/pubsub/examples/demo.js (after `pnpm build`).
import { fork } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import { connect } from '@ipc-pubsub/pubsub'

const FRAME_BYTES = 1024 * 1024
const RATE_HZ = 30
const STREAM_MS = 10_000
const KILL_AT_MS = 5_000
const HARD_LIMIT_MS = 19_000
const TOPIC = 'camera/front'

const role = process.argv[2]
const say = (message) => process.send?.(message)
const monotonicMs = () => Number(process.hrtime.bigint()) / 1e6

// ---------------------------------------------------------------- child processes

/** Every child reports its hub changes (to find who holds it) and exits when told. */
async function join(name) {
  const node = await connect({ name })
  say({ type: 'joined', name, pid: process.pid, isHub: node.topology.isHub })
  node.topology.on('hub', (hub) => say({ type: 'hub', name, self: hub.self, hubId: hub.id, t: monotonicMs() }))
  process.on('disconnect', () => process.exit(0))
  return node
}

if (role === 'dashboard') {
  // Joins first, so it holds the hub; otherwise idle. The demo kills it halfway.
  await join('dashboard')
} else if (role === 'camera') {
  const node = await join('camera')
  const names = new Map()
  node.topology.on('event', (change) => {
    if (change.type === 'node-up') names.set(change.node.id, change.node.name)
    const who = names.get(change.node.id) ?? change.node.name
    const what = change.endpoint ? `${change.endpoint.role} of ${change.endpoint.topic}` : `pid ${change.node.pid}`
    say({ type: 'topology', text: `${change.type.padEnd(13)} ${who} (${what})${change.reason ? `, ${change.reason}` : ''}` })
  })
  const camera = node.publisher(TOPIC)
  camera.on('subscribers', (count) => say({ type: 'log', text: `subscribers: ${count}` }))
  await camera.waitForSubscribers({ count: 2, signal: AbortSignal.timeout(5000) })
  say({ type: 'streaming' })
  const frame = new Uint8Array(FRAME_BYTES)
  const started = monotonicMs()
  let sent = 0
  for (let n = 0; monotonicMs() - started < STREAM_MS; n++) {
    // A frame a viewer can check: its number in the first 4 bytes, a ramp after.
    new DataView(frame.buffer).setUint32(0, n, true)
    frame[FRAME_BYTES - 1] = n & 0xff
    if (camera.publish(frame)) sent++
    // Pace by the clock, not by the loop: 30 Hz on average whatever a publish costs.
    const next = started + ((n + 1) * 1000) / RATE_HZ
    await sleep(Math.max(0, next - monotonicMs()))
  }
  say({ type: 'done', sent })
  await node.close()
  process.exit(0)
} else if (role === 'viewer-1' || role === 'viewer-2') {
  const node = await join(role)
  const workMs = role === 'viewer-2' ? 40 : 0
  const frames = node.subscribe(TOPIC, { queueSize: 4 })
  let window = { frames: 0, lost: 0, latencies: [] }
  const total = { frames: 0, lost: 0, bad: 0, latencies: [], arrivals: [] }
  setInterval(() => {
    say({ type: 'tick', name: role, ...window })
    window = { frames: 0, lost: 0, latencies: [] }
  }, 1000).unref()
  process.on('message', (message) => {
    if (message === 'report') say({ type: 'report', name: role, ...total })
  })
  for await (const frame of frames) {
    const latencyMs = Number(process.hrtime.bigint() - frame.timestamp) / 1e6
    const n = new DataView(frame.data.buffer, frame.data.byteOffset).getUint32(0, true)
    if (frame.data.length !== FRAME_BYTES || frame.data[FRAME_BYTES - 1] !== (n & 0xff)) total.bad++
    window.frames++
    window.lost += frame.lost
    window.latencies.push(latencyMs)
    total.frames++
    total.lost += frame.lost
    total.latencies.push(latencyMs)
    total.arrivals.push(monotonicMs())
    if (workMs > 0) await sleep(workMs) // the frame is still ours while we "work" on it
    frame.release() // (TypeScript and Node >= 24 can write `using frame = msg` instead)
  }
} else {
  await orchestrate()
}

// ---------------------------------------------------------------- the orchestrator

async function orchestrate() {
  const t0 = monotonicMs()
  const stamp = () => `[${((monotonicMs() - t0) / 1000).toFixed(2).padStart(5)}s]`
  const log = (who, text) => console.log(`${stamp()} ${who.padEnd(9)} ${text}`)
  const children = new Map()
  const hubHolder = { name: undefined }
  const reports = new Map()
  let killedAt
  let newHubAt
  let streaming
  let done
  const streamingStarted = new Promise((resolve) => {
    streaming = resolve
  })
  const cameraDone = new Promise((resolve) => {
    done = resolve
  })

  console.log(`ipc-pubsub demo: domain "default", ${FRAME_BYTES / 1024 / 1024} MiB frames at ${RATE_HZ} Hz for ${STREAM_MS / 1000} s,`)
  console.log('camera -> viewer-1 (fast) and viewer-2 (40 ms of work per frame, drops the oldest)\n')

  const hardStop = setTimeout(() => {
    console.log(`\n${stamp()} demo did not finish within ${HARD_LIMIT_MS / 1000} s: stopping`)
    for (const child of children.values()) child.kill('SIGKILL')
    process.exit(1)
  }, HARD_LIMIT_MS)

  function start(name) {
    const child = fork(new URL(import.meta.url).pathname, [name], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    children.set(name, child)
    const joined = new Promise((resolve) => {
      child.on('message', (message) => {
        switch (message.type) {
          case 'joined':
            log(name, `pid ${message.pid} joined${message.isHub ? ', holds the hub' : ''}`)
            if (message.isHub) hubHolder.name = name
            resolve()
            break
          case 'hub':
            if (message.self) hubHolder.name = name
            if (killedAt !== undefined && newHubAt === undefined) newHubAt = message.t
            if (killedAt !== undefined && message.self) {
              log(name, `now holds the hub: elected ${(message.t - killedAt).toFixed(1)} ms after the kill`)
            }
            break
          case 'topology':
            log('topology', message.text)
            break
          case 'log':
            log(name, message.text)
            break
          case 'streaming':
            streaming()
            break
          case 'tick': {
            const sorted = message.latencies.sort((a, b) => a - b)
            const p50 = sorted[Math.floor(sorted.length / 2)] ?? Number.NaN
            log(name, `${String(message.frames).padStart(2)} fps  latency p50 ${p50.toFixed(2)} ms, max ${(sorted.at(-1) ?? Number.NaN).toFixed(2)} ms  lost ${message.lost}`)
            break
          }
          case 'done':
            log(name, `done: published ${message.sent} frames`)
            done()
            break
          case 'report':
            reports.get(name)?.(message)
            break
        }
      })
    })
    child.on('exit', (code, signal) => {
      children.delete(name)
      if (signal !== 'SIGKILL' && code !== 0) log(name, `exited with ${code ?? signal}`)
    })
    return joined
  }

  // The dashboard joins first: it holds the hub (unless another ipc-pubsub process on this
  // machine already does; then the demo says so and kills nothing).
  await start('dashboard')
  await Promise.all([start('viewer-1'), start('viewer-2')])
  await start('camera')
  await streamingStarted
  log('demo', 'streaming')

  await sleep(KILL_AT_MS)
  const victim = hubHolder.name
  const child = victim === undefined ? undefined : children.get(victim)
  if (child === undefined) {
    log('demo', 'the hub is held by a process outside this demo: not killing it')
  } else {
    log('demo', `kill -9 ${victim} (pid ${child.pid}), which holds the hub`)
    killedAt = monotonicMs()
    child.kill('SIGKILL')
  }

  await cameraDone
  await sleep(300) // the last frames drain
  const finals = await Promise.all(
    ['viewer-1', 'viewer-2'].map(
      (name) =>
        new Promise((resolve) => {
          reports.set(name, resolve)
          children.get(name)?.send('report')
        }),
    ),
  )
  clearTimeout(hardStop)
  for (const remaining of children.values()) remaining.disconnect()

  console.log('\nsummary')
  console.log('viewer    frames  lost  bad  latency p50  p99      max      longest gap around the kill')
  for (const report of finals) {
    const sorted = report.latencies.sort((a, b) => a - b)
    const pick = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN
    let gap = 0
    if (killedAt !== undefined) {
      const around = report.arrivals.filter((t) => t > killedAt - 500 && t < killedAt + 1500)
      for (let i = 1; i < around.length; i++) gap = Math.max(gap, around[i] - around[i - 1])
    }
    console.log(
      `${report.name.padEnd(9)} ${String(report.frames).padStart(6)} ${String(report.lost).padStart(5)} ${String(report.bad).padStart(4)}  ` +
        `${pick(0.5).toFixed(2).padStart(8)} ms ${pick(0.99).toFixed(2).padStart(6)} ms ${pick(1).toFixed(2).padStart(6)} ms  ` +
        `${killedAt === undefined ? '-' : `${gap.toFixed(1)} ms`}`,
    )
  }
  if (killedAt !== undefined) {
    const failover = newHubAt === undefined ? 'no new hub seen' : `a new hub in ${(newHubAt - killedAt).toFixed(1)} ms`
    console.log(`\nhub killed at ${((killedAt - t0) / 1000).toFixed(2)} s: ${failover}; frames kept flowing (gap column).`)
  }
  const bad = finals.some((report) => report.bad > 0 || report.frames === 0)
  console.log(bad ? '\nFAILED: a viewer got no frames or a corrupt one' : '\nok')
  process.exitCode = bad ? 1 : 0
}
