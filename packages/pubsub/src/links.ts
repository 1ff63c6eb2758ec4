// The link manager: a node's data links (link.ts), outbound by subscribing node and inbound
// as publishing nodes open them, with the retries and back-off of outbound links that fail.
// Which links are wanted is routing's call (routing.ts); this file makes them exist, retries
// them, and ends them at shutdown.
//
// Invariants:
// - At most one outbound link per node: ensure() makes none while one exists or a retry is
//   pending, and a retry that fires while one exists does nothing.
// - Nothing runs without a counterpart: the only timer is a link's retry after a failed
//   connect or a lost link, armed only while the link is still wanted and the node is not
//   closing, and unref'd. A retry that fires for a link no longer wanted just ends.
// - The back-off doubles from LINK_RETRY_MIN_MS up to LINK_RETRY_MAX_MS per node, and starts
//   again only after a link that lasted STABLE_LINK_MS.
// - A failure is reported ('error' through the owner) unless it is the expected noise of a
//   subscriber's node dying: refused or vanished addresses, a peer that hung up, a peer that
//   died mid-handshake.
import { readFileSync } from 'node:fs'
import { type Authorize, type Channel, FdpassError } from '@ipc-pubsub/fdpass'
import { PubSubError } from './errors.js'
import { type InboundHost, InboundLink, type OutboundEvents, OutboundLink } from './link.js'
import type { PublisherPool } from './pool.js'

const LINK_RETRY_MIN_MS = 20
const LINK_RETRY_MAX_MS = 1000
const STABLE_LINK_MS = 1000

/** @internal What the link manager asks of its node (and, through it, of routing). */
export interface LinkOwner {
  /** This node's id now (a rejoin changes it): what a new link's hello says. */
  self(): string
  /** True once the node is closing: no link is made or retried any more. */
  closing(): boolean
  /** Whether a link to `node` is still wanted (see Routing.linkWanted). */
  wanted(node: string): boolean
  /** The data address `node` announced in the topology, if it is up. */
  address(node: string): string | null | undefined
  /**
   * The pid of `node`'s process as this process sees it: undefined while the topology does
   * not know the node, or when it runs in another pid namespace.
   */
  peerPid(node: string): number | undefined
  /** The outbound link to `node` opened or closed. */
  linkChanged(node: string): void
  /** Credits came back on the link to `node` (for `subscription`, or for any of the link's when undefined). */
  credit(node: string, subscription: string | undefined): void
  error(error: Error): void
}

/** @internal A node's outbound and inbound links, and the retries of the outbound ones. */
export class Links {
  readonly #owner: LinkOwner
  readonly #authorize: Authorize | undefined
  readonly #inboundHost: InboundHost
  readonly #outbound = new Map<string, OutboundLink>()
  readonly #retries = new Map<string, { timer: NodeJS.Timeout | undefined; delay: number }>()
  readonly #inbound = new Set<InboundLink>()
  // Set when the node starts shutting down (before it is `closing`): links are no longer
  // dropped one by one, the shutdown closes (or cuts) every link itself, and waits for it.
  #stopping = false
  // Links shutdown is closing: destroy() or the close deadline cuts them.
  #ending: (OutboundLink | InboundLink)[] = []

  /** `inbound`: what inbound links ask the node; the link set itself is kept here. */
  constructor(owner: LinkOwner, inbound: InboundHost, authorize: Authorize | undefined) {
    this.#owner = owner
    this.#authorize = authorize
    this.#inboundHost = {
      ...inbound,
      closed: (link: InboundLink): void => {
        this.#inbound.delete(link)
        inbound.closed(link)
      },
    }
  }

  // ---- inbound ----

  /** Serves a channel a publishing node opened to us. */
  accept(channel: Channel): void {
    this.#inbound.add(new InboundLink(channel, this.#inboundHost))
    // A link that breaks below the data protocol (this process ran out of fds: the kernel
    // dropped a frame's descriptors; or the peer broke fdpass framing) lost what was in
    // flight on it: said here; the subscriptions count the loss in the next `lost`.
    void channel.closed.then((reason) => {
      if (reason !== undefined && isLinkFailure(reason)) {
        this.#owner.error(new PubSubError('ERR_PUBSUB_LINK', `a link from process ${channel.peer.pid} broke: ${reason.message}`, { cause: reason }))
      }
    })
  }

  /** A local subscription closed (or was renamed): inbound links drop its credit counts. */
  forget(subscription: string): void {
    for (const link of this.#inbound) link.forget(subscription)
  }

  // ---- outbound ----

  /** The outbound link to `node` (connecting or open), if there is one. */
  get(node: string): OutboundLink | undefined {
    return this.#outbound.get(node)
  }

  /** Detaches `pool` from every outbound link it is attached to (its publisher closes). */
  detach(pool: PublisherPool): void {
    for (const link of this.#outbound.values()) link.detach(pool)
  }

  /** This node rejoined as `id`: open links tell their subscribers who we are now. */
  hello(id: string): void {
    for (const link of this.#outbound.values()) if (link.open) link.hello(id)
  }

  /** Connects a link to `node` unless one exists or a retry is pending. */
  ensure(node: string): void {
    if (this.#owner.closing() || this.#outbound.has(node) || this.#retries.get(node)?.timer !== undefined) return
    const address = this.#owner.address(node)
    // A topology node without a data endpoint (a plain topology client) cannot subscribe.
    if (typeof address !== 'string' || address.length === 0) return
    const link = new OutboundLink(node, address, this.#events)
    this.#outbound.set(node, link)
    void link.connect(() => this.#owner.self(), this.#authorize).then((error) => {
      if (error === undefined) return
      if (this.#outbound.get(node) === link) this.#outbound.delete(node)
      if (this.#owner.closing() || !this.#owner.wanted(node)) return
      if (!isQuietLinkFailure(error) && !this.#diedDuringHandshake(node, error)) this.#owner.error(error)
      this.#scheduleRetry(node)
    })
  }

  /** Closes the link to `node` and cancels its retry, unless it is still wanted. */
  dropIfIdle(node: string): void {
    // While shutting down, the node's shutdown closes (or cuts) every link itself, and waits for it.
    if (this.#stopping || this.#owner.wanted(node)) return
    this.#cancelRetry(node)
    const link = this.#outbound.get(node)
    if (link === undefined) return
    this.#outbound.delete(node)
    void link.close()
  }

  /** `node` left the domain: its link is destroyed, its retry cancelled. */
  gone(node: string): void {
    const link = this.#outbound.get(node)
    if (link) {
      this.#outbound.delete(node)
      void link.destroy()
    }
    this.#cancelRetry(node)
  }

  readonly #events: OutboundEvents = {
    open: (link: OutboundLink): void => {
      this.#owner.linkChanged(link.node)
    },
    credit: (link: OutboundLink, subscription: string | undefined): void => {
      this.#owner.credit(link.node, subscription)
    },
    closed: (link: OutboundLink, error: Error | undefined): void => {
      if (this.#outbound.get(link.node) === link) this.#outbound.delete(link.node)
      if (error && !isPeerGone(error)) {
        this.#owner.error(
          isLinkFailure(error) ? new PubSubError('ERR_PUBSUB_LINK', `the link to node ${link.node} broke: ${error.message}`, { cause: error }) : error,
        )
      }
      // The back-off starts again only after a link that lasted: a peer that hangs up right
      // after our hello (a version it does not speak, say) is retried ever more slowly.
      const retry = this.#retries.get(link.node)
      if (retry?.timer === undefined && Date.now() - link.openedAt >= STABLE_LINK_MS) this.#retries.delete(link.node)
      this.#owner.linkChanged(link.node)
      // The subscriber's node may be gone (the topology says so shortly) or just have
      // dropped us; if it is still wanted, try again.
      if (!this.#owner.closing() && this.#owner.wanted(link.node)) this.#scheduleRetry(link.node)
    },
  }

  // A node that dies while we link to it closes the connection before admitting us, which
  // fdpass cannot tell from a refusal (authorize said no): the peer's process tells. Dead or
  // exiting, it did not refuse us, and the topology reports it down shortly.
  #diedDuringHandshake(node: string, error: Error): boolean {
    const cause = error.cause as { code?: unknown; cause?: { code?: unknown } } | undefined
    if (cause?.code !== 'ERR_FDPASS_UNAUTHORIZED' || cause.cause?.code !== 'ERR_FDPASS_PEER_CLOSED') return false
    const pid = this.#owner.peerPid(node)
    // A pid from another pid namespace cannot be looked up here.
    if (pid === undefined) return false
    return processGone(pid)
  }

  #scheduleRetry(node: string): void {
    const retry = this.#retries.get(node) ?? { timer: undefined, delay: LINK_RETRY_MIN_MS / 2 }
    if (retry.timer !== undefined) return
    retry.delay = Math.min(retry.delay * 2, LINK_RETRY_MAX_MS)
    retry.timer = setTimeout(() => {
      retry.timer = undefined
      if (!this.#owner.closing() && this.#owner.wanted(node)) this.ensure(node)
      else this.#retries.delete(node)
    }, retry.delay)
    retry.timer.unref()
    this.#retries.set(node, retry)
  }

  #cancelRetry(node: string): void {
    const retry = this.#retries.get(node)
    if (retry?.timer !== undefined) clearTimeout(retry.timer)
    this.#retries.delete(node)
  }

  // ---- shutdown ----

  /** The node starts shutting down: links are no longer dropped one by one (see dropIfIdle). */
  stop(): void {
    this.#stopping = true
  }

  /** Cancels every pending retry. */
  cancelRetries(): void {
    for (const retry of this.#retries.values()) if (retry.timer !== undefined) clearTimeout(retry.timer)
    this.#retries.clear()
  }

  /**
   * Ends every link: closes them gracefully (frames queued are flushed), or destroys them if
   * `cut`. Returns each link's ending; they stay `flushing` (and cut() reaches them) until
   * the node calls ended().
   */
  end(cut: boolean): Promise<void>[] {
    this.#ending = [...this.#outbound.values(), ...this.#inbound]
    this.#outbound.clear()
    return this.#ending.map((link) => (cut ? link.destroy() : link.close()))
  }

  /** True while end()'s links have not all ended. */
  get flushing(): boolean {
    return this.#ending.length > 0
  }

  /** Cuts the links end() is closing, now (each destroy() also ends its pending close()). */
  cut(): void {
    for (const link of this.#ending) void link.destroy()
  }

  /** end()'s links all ended. */
  ended(): void {
    this.#ending = []
  }
}

// An fdpass failure of a link itself (not the peer leaving, not our own close).
function isLinkFailure(error: Error): boolean {
  if (!FdpassError.isInstance(error)) return false
  return error.code !== 'ERR_FDPASS_PEER_CLOSED' && error.code !== 'ERR_FDPASS_CLOSED' && error.code !== 'ERR_FDPASS_ABORTED'
}

function isPeerGone(error: Error): boolean {
  return (error as { code?: unknown }).code === 'ERR_FDPASS_PEER_CLOSED'
}

// A subscriber's node that just died refuses connections until the topology reports it down:
// retried quietly. Anything else (refused by authorize, out of fds) is worth an 'error'.
function isQuietLinkFailure(error: Error): boolean {
  const code = (error.cause as { code?: unknown } | undefined)?.code
  return code === 'ERR_FDPASS_ECONNREFUSED' || code === 'ERR_FDPASS_ENOENT' || code === 'ERR_FDPASS_ABORTED'
}

// PF_EXITING in /proc/<pid>/stat's flags: the process is exiting (its fds are being closed).
const PF_EXITING = 0x4

/** True if process `pid` is gone, a zombie, or exiting. */
function processGone(pid: number): boolean {
  let stat: string
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return true
  }
  // Fields after the command name (which may hold spaces): state, ppid, pgrp, session, tty_nr, tpgid, flags.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const state = fields[0]
  return state === 'Z' || state === 'X' || state === 'x' || (Number(fields[6]) & PF_EXITING) !== 0
}
