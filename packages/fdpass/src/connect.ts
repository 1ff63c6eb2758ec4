import { parseAddress } from './address.js'
import { Channel, type ChannelOptions, type PeerCredentials, resolveLimits } from './channel.js'
import { FdpassError } from './errors.js'
import * as native from './native.js'
import type { Authorize } from './server.js'

/** Options of `connect()`. */
export interface ConnectOptions extends ChannelOptions {
  /**
   * Whether to trust the process that listens on the address (its credentials are those of
   * the process that called listen()). Default: the same uid as this process, or root
   * (root can impersonate anyone anyway). Anyone can bind an abstract name first.
   */
  authorize?: Authorize
  /** Aborts the wait for the server's admission; rejects with ERR_FDPASS_ABORTED. */
  signal?: AbortSignal
}

/** @internal The default client policy: the server runs as our uid, or as root. */
export function sameUidOrRoot(peer: PeerCredentials): boolean {
  return peer.uid === 0 || peer.uid === process.getuid?.()
}

/**
 * Connects to a server made by `listen()` and resolves once the server has admitted this
 * process (its `authorize` said yes and its hello frame arrived). Rejects with a coded error:
 * ERR_FDPASS_ECONNREFUSED (nobody listens on the name), ERR_FDPASS_ENOENT (no such path),
 * ERR_FDPASS_EAGAIN (the server's backlog is full: retry later), ERR_FDPASS_UNAUTHORIZED
 * (the server refused us, or our `authorize` refused the server), ERR_FDPASS_ABORTED.
 */
export async function connect(address: string, options: ConnectOptions = {}): Promise<Channel> {
  const parsed = parseAddress(address)
  const limits = resolveLimits(options)
  const authorize = options.authorize ?? sameUidOrRoot
  if (typeof authorize !== 'function') {
    throw new FdpassError('ERR_FDPASS_INVALID_ARGUMENT', 'authorize must be a function')
  }
  const signal = options.signal
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new FdpassError('ERR_FDPASS_INVALID_ARGUMENT', 'signal must be an AbortSignal')
  }
  const context = `connect(${address})`
  if (signal?.aborted) throw aborted(context, signal)
  let fd: number
  let peer: PeerCredentials
  try {
    fd = native.socketSeqpacket()
  } catch (error) {
    throw FdpassError.fromNative(error, context)
  }
  try {
    native.connectFd(fd, parsed.sockaddr)
    peer = native.peerCred(fd)
  } catch (error) {
    native.closeFd(fd)
    throw FdpassError.fromNative(error, context)
  }
  let trusted: boolean
  try {
    trusted = (await authorize(peer)) === true
  } catch (error) {
    native.closeFd(fd)
    throw new FdpassError('ERR_FDPASS_UNAUTHORIZED', `${context}: authorize threw`, { cause: error })
  }
  if (!trusted) {
    native.closeFd(fd)
    throw new FdpassError(
      'ERR_FDPASS_UNAUTHORIZED',
      `${context}: authorize refused the server (pid ${peer.pid}, uid ${peer.uid}, gid ${peer.gid})`,
    )
  }
  if (signal?.aborted) {
    native.closeFd(fd)
    throw aborted(context, signal)
  }
  // From here the channel owns fd: every exit path goes through its teardown.
  const channel = Channel.create(fd, peer, limits, true)
  const admitted = channel.handshake()
  if (signal === undefined) {
    await admitted
    return channel
  }
  const onAbort = () => void channel.destroy(aborted(context, signal))
  signal.addEventListener('abort', onAbort, { once: true })
  try {
    await admitted
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
  return channel
}

function aborted(context: string, signal: AbortSignal): FdpassError {
  return new FdpassError('ERR_FDPASS_ABORTED', `${context}: aborted`, { cause: signal.reason })
}
