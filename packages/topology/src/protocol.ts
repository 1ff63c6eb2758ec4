// The messages of the topology protocol and their validation (docs/PROTOCOL.md). Pure code:
// every message from a peer goes through parseClientMessage / parseHubMessage before use, and
// anything malformed becomes ERR_TOPOLOGY_PROTOCOL, which closes that peer's connection.
import { TopologyError } from './errors.js'
import {
  type EndpointInfo,
  type Forget,
  type Json,
  LEAVE_REASONS,
  type LeaveReason,
  type NodeInfo,
  type TopologyEvent,
} from './history.js'

/** The protocol version this package speaks. */
export const PROTOCOL_VERSION = 1

/** Ids: 1-64 characters of [A-Za-z0-9_.-]. Endpoint ids are `<node id>/<suffix>`. */
const ID = /^[A-Za-z0-9_.-]{1,64}$/
const MAX_NAME = 256
const MAX_TOPIC = 1024
/** Serialized size bound of one node's metadata, or one endpoint's options. */
export const MAX_METADATA_BYTES = 16 * 1024

export type ClientMessage =
  | {
      readonly type: 'hello'
      readonly protocol: number
      readonly node: NodeInfo
      readonly endpoints: EndpointInfo[]
      readonly history: TopologyEvent[]
    }
  | { readonly type: 'endpoint-add'; readonly endpoint: EndpointInfo }
  | { readonly type: 'endpoint-remove'; readonly endpoint: string }
  | { readonly type: 'bye' }

export type HubMessage =
  | {
      readonly type: 'welcome'
      readonly protocol: number
      readonly hub: string
      readonly epoch: number
      readonly history: TopologyEvent[]
    }
  | { readonly type: 'events'; readonly events: TopologyEvent[]; readonly forget?: Forget }
  | { readonly type: 'rejected'; readonly code: string; readonly message: string }

function fail(message: string): never {
  throw new TopologyError('ERR_TOPOLOGY_PROTOCOL', message)
}

function record(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(`${what} must be an object`)
  return value as Record<string, unknown>
}

function string(value: unknown, what: string, max: number): string {
  if (typeof value !== 'string' || value.length > max) fail(`${what} must be a string of at most ${max} characters`)
  return value
}

/** A node or endpoint-suffix id. */
export function isId(value: unknown): value is string {
  return typeof value === 'string' && ID.test(value)
}

function id(value: unknown, what: string): string {
  if (!isId(value)) fail(`${what} must be 1-64 characters of [A-Za-z0-9_.-]`)
  return value
}

/** An endpoint id: `<node id>/<suffix>`. */
export function isEndpointId(value: unknown, node?: string): value is string {
  if (typeof value !== 'string') return false
  const slash = value.indexOf('/')
  if (slash < 0) return false
  const owner = value.slice(0, slash)
  return isId(owner) && isId(value.slice(slash + 1)) && (node === undefined || owner === node)
}

function endpointId(value: unknown, what: string, node?: string): string {
  if (!isEndpointId(value, node)) fail(`${what} must be "<node id>/<suffix>"${node ? ` of node ${node}` : ''}`)
  return value
}

function integer(value: unknown, what: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    fail(`${what} must be an integer in ${min}..${max}`)
  }
  return value
}

/**
 * Largest epoch (2^52: 142 years of CLOCK_MONOTONIC microseconds). A hub that merges an
 * epoch moves to epoch + 1, which must still be an exact JSON integer.
 */
export const MAX_EPOCH = 2 ** 52

/** A JSON object whose serialization fits MAX_METADATA_BYTES. */
export function jsonObject(value: unknown, what: string): { [key: string]: Json } {
  const object = record(value, what)
  let size: number
  try {
    size = Buffer.byteLength(JSON.stringify(object))
  } catch {
    fail(`${what} must be plain JSON`)
  }
  if (size > MAX_METADATA_BYTES) fail(`${what} must serialize to at most ${MAX_METADATA_BYTES} bytes`)
  return object as { [key: string]: Json }
}

export function parseNodeInfo(value: unknown, what = 'node'): NodeInfo {
  const node = record(value, what)
  const startTime = node.startTime === null ? null : integer(node.startTime, `${what}.startTime`, 0)
  const pidNamespace = node.pidNamespace === null ? null : string(node.pidNamespace, `${what}.pidNamespace`, 64)
  const endpoint = node.endpoint === null ? null : string(node.endpoint, `${what}.endpoint`, 4096)
  return {
    id: id(node.id, `${what}.id`),
    name: string(node.name, `${what}.name`, MAX_NAME),
    pid: integer(node.pid, `${what}.pid`, 1),
    startTime,
    pidNamespace,
    endpoint,
    metadata: jsonObject(node.metadata, `${what}.metadata`),
  }
}

export function parseEndpointInfo(value: unknown, what = 'endpoint', node?: string): EndpointInfo {
  const endpoint = record(value, what)
  const owner = id(endpoint.node, `${what}.node`)
  if (node !== undefined && owner !== node) fail(`${what}.node must be the sender's own id`)
  const role = endpoint.role
  if (role !== 'publisher' && role !== 'subscriber') fail(`${what}.role must be "publisher" or "subscriber"`)
  const topic = string(endpoint.topic, `${what}.topic`, MAX_TOPIC)
  if (topic.length === 0) fail(`${what}.topic must not be empty`)
  return {
    id: endpointId(endpoint.id, `${what}.id`, owner),
    node: owner,
    topic,
    role,
    options: jsonObject(endpoint.options, `${what}.options`),
  }
}

function leaveReason(value: unknown, what: string): LeaveReason {
  if (!LEAVE_REASONS.includes(value as LeaveReason)) fail(`${what} must be one of ${LEAVE_REASONS.join(', ')}`)
  return value as LeaveReason
}

export function parseEvent(value: unknown, what = 'event'): TopologyEvent {
  const event = record(value, what)
  const epoch = integer(event.epoch, `${what}.epoch`, 0, MAX_EPOCH)
  const seq = integer(event.seq, `${what}.seq`, 1)
  const uid = string(event.uid, `${what}.uid`, 256)
  if (uid.length === 0) fail(`${what}.uid must not be empty`)
  const stamp = { epoch, seq, uid }
  switch (event.type) {
    case 'node-joined':
      return { type: 'node-joined', ...stamp, node: parseNodeInfo(event.node, `${what}.node`) }
    case 'node-left':
      return { type: 'node-left', ...stamp, node: id(event.node, `${what}.node`), reason: leaveReason(event.reason, `${what}.reason`) }
    case 'endpoint-added':
      return { type: 'endpoint-added', ...stamp, endpoint: parseEndpointInfo(event.endpoint, `${what}.endpoint`) }
    case 'endpoint-removed': {
      const node = id(event.node, `${what}.node`)
      return { type: 'endpoint-removed', ...stamp, node, endpoint: endpointId(event.endpoint, `${what}.endpoint`, node) }
    }
    default:
      fail(`${what}.type is not an event type`)
  }
}

function events(value: unknown, what: string): TopologyEvent[] {
  if (!Array.isArray(value)) fail(`${what} must be an array`)
  return value.map((event, index) => parseEvent(event, `${what}[${index}]`))
}

function version(value: unknown): number {
  const protocol = integer(value, 'protocol', 1)
  if (protocol !== PROTOCOL_VERSION) {
    throw new TopologyError('ERR_TOPOLOGY_VERSION', `peer speaks protocol ${protocol}, this node speaks ${PROTOCOL_VERSION}`)
  }
  return protocol
}

/** Validates a message a client sent to the hub. `sender`: the node id its hello gave, once known. */
export function parseClientMessage(value: unknown, sender?: string): ClientMessage {
  const message = record(value, 'message')
  switch (message.type) {
    case 'hello': {
      const protocol = version(message.protocol)
      const node = parseNodeInfo(message.node)
      if (!Array.isArray(message.endpoints)) fail('endpoints must be an array')
      const endpoints = message.endpoints.map((endpoint, index) =>
        parseEndpointInfo(endpoint, `endpoints[${index}]`, node.id),
      )
      return { type: 'hello', protocol, node, endpoints, history: events(message.history, 'history') }
    }
    case 'endpoint-add':
      return { type: 'endpoint-add', endpoint: parseEndpointInfo(message.endpoint, 'endpoint', sender) }
    case 'endpoint-remove':
      return { type: 'endpoint-remove', endpoint: endpointId(message.endpoint, 'endpoint', sender) }
    case 'bye':
      return { type: 'bye' }
    default:
      fail('message.type is not a client message type')
  }
}

function forget(value: unknown): Forget | undefined {
  if (value === undefined) return undefined
  const object = record(value, 'forget')
  if (!Array.isArray(object.nodes) || !Array.isArray(object.endpoints)) fail('forget.nodes and forget.endpoints must be arrays')
  return {
    nodes: object.nodes.map((node, index) => id(node, `forget.nodes[${index}]`)),
    endpoints: object.endpoints.map((endpoint, index) => endpointId(endpoint, `forget.endpoints[${index}]`)),
  }
}

/** Validates a message the hub sent to a client. */
export function parseHubMessage(value: unknown): HubMessage {
  const message = record(value, 'message')
  switch (message.type) {
    case 'welcome':
      return {
        type: 'welcome',
        protocol: version(message.protocol),
        hub: id(message.hub, 'hub'),
        epoch: integer(message.epoch, 'epoch', 0, MAX_EPOCH + 1),
        history: events(message.history, 'history'),
      }
    case 'events': {
      const parsed = forget(message.forget)
      const list = events(message.events, 'events')
      return parsed === undefined ? { type: 'events', events: list } : { type: 'events', events: list, forget: parsed }
    }
    case 'rejected':
      return {
        type: 'rejected',
        code: string(message.code, 'code', 64),
        message: string(message.message, 'message', 1024),
      }
    default:
      fail('message.type is not a hub message type')
  }
}
