export type { EndpointDownReason, TopologyChange } from './changes.js'
export {
  type HubInfo,
  type JoinOptions,
  join,
  TopologyClient,
  type TopologyClientEvents,
  type TopologySnapshot,
} from './client.js'
export { TopologyError, type TopologyErrorCode } from './errors.js'
export type {
  EndpointAdded,
  EndpointInfo,
  EndpointRemoved,
  EndpointRole,
  Json,
  LeaveReason,
  NodeInfo,
  NodeJoined,
  NodeLeft,
  NodeState,
  TopologyEvent,
} from './history.js'
export { PROTOCOL_VERSION } from './protocol.js'
