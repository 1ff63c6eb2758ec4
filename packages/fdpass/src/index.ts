export { MAX_ABSTRACT_NAME_BYTES, MAX_PATH_BYTES } from './address.js'
export {
  Channel,
  type ChannelEvents,
  type ChannelOptions,
  type Limits,
  MAX_FDS_PER_FRAME,
  MAX_FRAME_SIZE,
  type Message,
  type PeerCredentials,
} from './channel.js'
export { type ConnectOptions, connect } from './connect.js'
export { FdpassError, type FdpassErrorCode } from './errors.js'
export { type Authorize, type ListenOptions, listen, Server, type ServerEvents } from './server.js'
export { cancelCloseFdOnThreadExit, closeFdOnThreadExit } from './thread-exit.js'
export { Doorbell } from './doorbell.js'
