// What the coordinator tells a worker process to do, and what workers say back. Workers get
// their Job as JSON in argv and talk to the coordinator over a control socket (JSON lines),
// never over the transport under test, so the control path costs every transport the same.

/** A transport under test. `ipc-pubsub:<name>` is one of @ipc-pubsub/pubsub's TRANSPORTS. */
export type TransportId = `ipc-pubsub:${string}` | 'node:net' | 'child_process' | 'zeromq'

/** The transport every ratio is taken against. */
export const BASELINE: TransportId = 'node:net'

export type CaseKind = 'latency' | 'throughput' | 'fanout' | 'idle'

/** One measurement, run once per transport and repeat. */
export interface Case {
  kind: CaseKind
  /** Message size in bytes. */
  size: number
  /** Measured round trips (latency) or messages (throughput, fan-out). */
  count: number
  /** Round trips or messages before the measured ones, not counted. */
  warmup: number
  /** Subscriber processes. */
  subscribers: number
}

export interface Job {
  /** '<run>:pub', '<run>:sub0'.. '<run>:subN', or '<run>:micro'. */
  id: string
  /** A run's publisher or subscriber; the micro-cost worker; the micro worker's echo peer. */
  role: 'pub' | 'sub' | 'micro' | 'echo'
  /** Which subscriber this is (0 for the publisher). */
  index: number
  transport: TransportId
  case: Case
  /** A name unique to this run, from which each transport derives its addresses. */
  rendezvous: string
  /** The coordinator's control socket. */
  control: string
  /** Where the publisher and the subscribers run (CPU numbers), or null: the scheduler decides. */
  placement: Placement
  /** A quick run: the micro worker takes fewer samples. */
  quick: boolean
}

export interface Placement {
  publisher: number | null
  subscriber: number | null
}

/** Transports whose publisher process starts the subscriber processes (IPC needs a parent). */
export function spawnsSubscribers(transport: TransportId): boolean {
  return transport === 'child_process'
}

/** Worker -> coordinator. */
export type WorkerMessage =
  | { type: 'hello'; id: string; pid: number }
  /** Transport set up: publishers listen, subscribers are attached. */
  | { type: 'ready' }
  /** A subscriber received every warm-up message. */
  | { type: 'warm' }
  /** Latency: the publisher's round trips, in microseconds. */
  | { type: 'latency'; samples: number[] }
  /** Throughput: the publisher sent every measured message. */
  | { type: 'sent' }
  /** A subscriber got every measured message. */
  | { type: 'received'; messages: number; bytes: number; firstSentAt: string; lastReceivedAt: string }
  /** Reply to 'exit': peak resident set (KiB) and messages whose checksum was verified. */
  | { type: 'bye'; maxRssKiB: number; verified: number }
  | { type: 'error'; message: string }
  /** The micro-cost worker's figures. */
  | { type: 'micro'; results: MicroResults }

/** Micro-costs that explain the big numbers. Times in microseconds unless named otherwise. */
export interface MicroResults {
  /** One koffi call (getpid), nanoseconds. */
  koffiCallNs: number
  /** Segment.create(size) + map + close, per size: the mean, and the major GCs that came with it. */
  segmentCycleUs: { size: number; us: number; majorGcsPerOp: number }[]
  /** Writing one byte per page of a fresh segment, per MiB. */
  firstTouchWriteUsPerMiB: number
  /** The same pages written again (already faulted in), per MiB. */
  secondTouchWriteUsPerMiB: number
  /** A second, read-only mapping (what a subscriber does) reading one byte per page, per MiB. */
  firstTouchReadUsPerMiB: number
  /** Round trip of a 64-byte fdpass frame carrying one memfd each way, between two processes. */
  fdRoundTripUs: number
  /** The same frame without the fd. */
  frameRoundTripUs: number
  /** A 64-byte node:net round trip between the same two processes. */
  netRoundTripUs: number
}

/** Coordinator -> worker. */
export type CoordinatorMessage = { type: 'go' } | { type: 'exit' }
