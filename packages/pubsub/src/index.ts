export { type ConnectOptions, connect, PubSubNode, type PubSubNodeEvents } from './node.js'
export { PubSubError, type PubSubErrorCode } from './errors.js'
// Errors a user can receive from the layers below (see the README's error table): one import.
export { FdpassError, type FdpassErrorCode } from '@ipc-pubsub/fdpass'
export { ShmError, type ShmErrorCode } from '@ipc-pubsub/shm'
export { TopologyError, type TopologyErrorCode } from '@ipc-pubsub/topology'
export { DATA_PROTOCOL_VERSION } from './frames.js'
export { Message } from './message.js'
export { Loan, Publisher, type PublisherEvents, type PublisherOptions } from './publisher.js'
export { DEFAULT_POOL_SIZE } from './pool.js'
export {
  DEFAULT_MAX_HELD,
  DEFAULT_QUEUE_SIZE,
  MAX_QUEUE_SIZE,
  type QueuePolicy,
  type SubscribeOptions,
  Subscription,
  type SubscriptionEvents,
} from './subscription.js'
export { TRANSPORTS, type TransportName } from './transport.js'
