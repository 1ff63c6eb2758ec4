import type { Job } from '../job.js'

/**
 * Receives one message. `release` frees it (a mapped segment is unmapped); call it once done
 * with the bytes. Transports that hand out plain buffers make it a no-op.
 */
export type Handler = (bytes: Uint8Array, release: () => void) => void

/** The publishing end of a transport, in the publisher process. */
export interface PublisherSide {
  /** Resolves once `count` subscribers are attached, as far as the transport can tell. */
  attached(count: number): Promise<void>
  /**
   * Sends `bytes` to every subscriber, losslessly. Returns a promise when the caller must
   * wait before the next send (back-pressure), nothing otherwise. The caller never reuses
   * `bytes` afterwards: some transports keep a reference until it is written out.
   */
  send(bytes: Uint8Array): void | Promise<void>
  /** Stops: closes sockets, waits for child processes it started. */
  close(): Promise<void>
}

/** The subscribing end, in a subscriber process. */
export interface SubscriberSide {
  /** Sends back to the publisher (ping-pong); same contract as PublisherSide.send. */
  reply(bytes: Uint8Array): void | Promise<void>
  close(): Promise<void>
}

export interface TransportModule {
  /** The transport starts subscriber processes itself (child_process IPC needs a parent). */
  readonly spawnsSubscribers: boolean
  /** Sets up the publishing end; `onReply` gets subscriber 0's replies (latency runs). */
  publisher(job: Job, onReply: Handler, spawnSubscriber: (index: number) => Job): Promise<PublisherSide>
  /** Sets up a subscribing end; resolves once attached. */
  subscriber(job: Job, onMessage: Handler): Promise<SubscriberSide>
}

/** Waits for every promise that `send` returned (fan-out to several peers). */
export function settle(pending: Promise<void>[]): void | Promise<void> {
  if (pending.length === 0) return
  if (pending.length === 1) return pending[0]
  return Promise.all(pending).then(() => {})
}
