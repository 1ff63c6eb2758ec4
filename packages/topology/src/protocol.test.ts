// Validation of the topology protocol's messages (docs/PROTOCOL.md §4–5): valid messages
// round-trip through JSON, every malformed one is a TopologyError ERR_TOPOLOGY_PROTOCOL (or
// ERR_TOPOLOGY_VERSION), and nothing else is ever thrown.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { TopologyError } from './errors.js'
import type { EndpointInfo, Json, NodeInfo, TopologyEvent } from './history.js'
import { LEAVE_REASONS } from './history.js'
import {
  MAX_EPOCH,
  isEndpointId,
  isId,
  jsonObject,
  MAX_METADATA_BYTES,
  PROTOCOL_VERSION,
  parseClientMessage,
  parseEvent,
  parseHubMessage,
} from './protocol.js'

// ---- helpers (self-contained) ----

const ID_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-'
const idArb = fc.string({ unit: fc.constantFrom(...ID_CHARS), minLength: 1, maxLength: 64 })
const textArb = (maxLength: number) => fc.string({ unit: 'binary', maxLength })
/** JSON objects, small enough to stay far below 16 KiB serialized. */
const objectArb: fc.Arbitrary<{ [key: string]: Json }> = fc.dictionary(
  fc.string({ maxLength: 8 }),
  fc.jsonValue({ maxDepth: 2 }) as fc.Arbitrary<Json>,
  { maxKeys: 4 },
)

const nodeInfoArb = (id: fc.Arbitrary<string> = idArb): fc.Arbitrary<NodeInfo> =>
  fc.record({
    id,
    name: textArb(100),
    pid: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
    startTime: fc.option(fc.maxSafeNat(), { nil: null }),
    pidNamespace: fc.option(textArb(30), { nil: null }),
    endpoint: fc.option(textArb(200), { nil: null }),
    metadata: objectArb,
  })

const endpointInfoArb = (owner: fc.Arbitrary<string> = idArb): fc.Arbitrary<EndpointInfo> =>
  fc
    .record({
      node: owner,
      suffix: idArb,
      topic: textArb(80).filter((topic) => topic.length > 0),
      role: fc.constantFrom('publisher' as const, 'subscriber' as const),
      options: objectArb,
    })
    .map(({ node, suffix, topic, role, options }) => ({ id: `${node}/${suffix}`, node, topic, role, options }))

const stampArb = fc.record({
  epoch: fc.integer({ min: 0, max: MAX_EPOCH }),
  seq: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
  uid: textArb(60).filter((uid) => uid.length > 0),
})

const eventArb: fc.Arbitrary<TopologyEvent> = fc.oneof(
  fc.record({ stamp: stampArb, node: nodeInfoArb() }).map(({ stamp, node }) => ({ type: 'node-joined' as const, ...stamp, node })),
  fc
    .record({ stamp: stampArb, node: idArb, reason: fc.constantFrom(...LEAVE_REASONS) })
    .map(({ stamp, node, reason }) => ({ type: 'node-left' as const, ...stamp, node, reason })),
  fc.record({ stamp: stampArb, endpoint: endpointInfoArb() }).map(({ stamp, endpoint }) => ({ type: 'endpoint-added' as const, ...stamp, endpoint })),
  fc
    .record({ stamp: stampArb, node: idArb, suffix: idArb })
    .map(({ stamp, node, suffix }) => ({ type: 'endpoint-removed' as const, ...stamp, endpoint: `${node}/${suffix}`, node })),
)

const historyArb = fc.array(eventArb, { maxLength: 4 })

/** A valid client message and the sender id it is valid for. */
const clientMessageArb = idArb.chain((sender) =>
  fc.tuple(
    fc.constant(sender),
    fc.oneof(
      fc.record({
        type: fc.constant('hello'),
        protocol: fc.constant(PROTOCOL_VERSION),
        node: nodeInfoArb(fc.constant(sender)),
        endpoints: fc.array(endpointInfoArb(fc.constant(sender)), { maxLength: 3 }),
        history: historyArb,
      }),
      fc.record({ type: fc.constant('endpoint-add'), endpoint: endpointInfoArb(fc.constant(sender)) }),
      idArb.map((suffix) => ({ type: 'endpoint-remove', endpoint: `${sender}/${suffix}` })),
      fc.constant({ type: 'bye' }),
    ),
  ),
)

const hubMessageArb = fc.oneof(
  fc.record({
    type: fc.constant('welcome'),
    protocol: fc.constant(PROTOCOL_VERSION),
    hub: idArb,
    epoch: fc.integer({ min: 0, max: MAX_EPOCH + 1 }),
    history: historyArb,
  }),
  fc.record({ type: fc.constant('events'), events: historyArb }),
  fc.record({
    type: fc.constant('events'),
    events: historyArb,
    forget: fc.record({
      nodes: fc.array(idArb, { maxLength: 3 }),
      endpoints: fc.array(fc.tuple(idArb, idArb).map(([node, suffix]) => `${node}/${suffix}`), { maxLength: 3 }),
    }),
  }),
  fc.record({ type: fc.constant('rejected'), code: textArb(64), message: textArb(300) }),
)

/** What the peer would receive: the message through JSON. */
const wire = (value: unknown): unknown => JSON.parse(JSON.stringify(value))

function thrown(fn: () => unknown): unknown {
  try {
    fn()
  } catch (error) {
    return error
  }
  throw new Error('expected a throw')
}

function expectCode(fn: () => unknown, code: 'ERR_TOPOLOGY_PROTOCOL' | 'ERR_TOPOLOGY_VERSION'): void {
  const error = thrown(fn)
  expect(error).toBeInstanceOf(TopologyError)
  expect(TopologyError.isInstance(error)).toBe(true)
  expect((error as TopologyError).code).toBe(code)
}

/** Only TopologyError (of a protocol code) may come out of a parser. */
function tolerant(fn: () => unknown): void {
  try {
    fn()
  } catch (error) {
    if (!(error instanceof TopologyError)) throw error
    expect(['ERR_TOPOLOGY_PROTOCOL', 'ERR_TOPOLOGY_VERSION']).toContain(error.code)
  }
}

/** A copy of `value` with the JSON value at `path` replaced (or deleted when `to` is undefined). */
function mutate(value: unknown, path: readonly (string | number)[], to: unknown): unknown {
  const copy = wire(value)
  if (path.length === 0) return to
  let target = copy as Record<string | number, unknown>
  for (const key of path.slice(0, -1)) target = target[key] as Record<string | number, unknown>
  const key = path.at(-1)!
  if (to !== undefined) target[key] = to
  else if (Array.isArray(target)) target.splice(key as number, 1) // no holes: JSON has none
  else delete target[key]
  return copy
}

function paths(value: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  const out: (string | number)[][] = [prefix]
  if (Array.isArray(value)) {
    for (const [i, item] of value.entries()) out.push(...paths(item, [...prefix, i]))
  } else if (typeof value === 'object' && value !== null) {
    for (const [key, item] of Object.entries(value)) out.push(...paths(item, [...prefix, key]))
  }
  return out
}

// Fixed valid messages for the malformed-input table.
const NODE: NodeInfo = {
  id: 'node-1',
  name: 'camera[4711]',
  pid: 4711,
  startTime: 123456,
  pidNamespace: 'pid:[4026531836]',
  endpoint: '@ipc-pubsub/data/x',
  metadata: { role: 'camera' },
}
const ENDPOINT: EndpointInfo = { id: 'node-1/1', node: 'node-1', topic: 'frames/front', role: 'publisher', options: {} }
const EVENTS: TopologyEvent[] = [
  { type: 'node-joined', epoch: 10, seq: 1, uid: 'h:10:1', node: NODE },
  { type: 'endpoint-added', epoch: 10, seq: 2, uid: 'h:10:2', endpoint: ENDPOINT },
  { type: 'endpoint-removed', epoch: 10, seq: 3, uid: 'h:10:3', endpoint: 'node-1/1', node: 'node-1' },
  { type: 'node-left', epoch: 10, seq: 4, uid: 'h:10:4', node: 'node-1', reason: 'closed' },
]
const HELLO = { type: 'hello', protocol: 1, node: NODE, endpoints: [ENDPOINT], history: EVENTS }
const WELCOME = { type: 'welcome', protocol: 1, hub: 'hub-1', epoch: 10, history: EVENTS }
const EVENTS_MESSAGE = { type: 'events', events: EVENTS, forget: { nodes: ['a'], endpoints: ['a/1'] } }
const REJECTED = { type: 'rejected', code: 'ERR_TOPOLOGY_NODE_LEFT', message: 'gone' }

const big = (bytes: number) => ({ k: 'x'.repeat(bytes - '{"k":""}'.length) })

// ---- tests ----

describe('protocol: valid messages', () => {
  it('the fixed examples parse to themselves', () => {
    expect(parseClientMessage(wire(HELLO))).toEqual(HELLO)
    expect(parseClientMessage(wire(HELLO), 'node-1')).toEqual(HELLO)
    expect(parseClientMessage({ type: 'endpoint-add', endpoint: ENDPOINT }, 'node-1')).toEqual({ type: 'endpoint-add', endpoint: ENDPOINT })
    expect(parseClientMessage({ type: 'endpoint-remove', endpoint: 'node-1/1' }, 'node-1')).toEqual({
      type: 'endpoint-remove',
      endpoint: 'node-1/1',
    })
    expect(parseClientMessage({ type: 'bye' })).toEqual({ type: 'bye' })
    expect(parseHubMessage(wire(WELCOME))).toEqual(WELCOME)
    expect(parseHubMessage(wire(EVENTS_MESSAGE))).toEqual(EVENTS_MESSAGE)
    expect(parseHubMessage({ type: 'events', events: [] })).toStrictEqual({ type: 'events', events: [] })
    expect(parseHubMessage(REJECTED)).toEqual(REJECTED)
  })

  it('client messages round-trip through JSON and parse to what was sent', () => {
    fc.assert(
      fc.property(clientMessageArb, ([sender, message]) => {
        const received = wire(message)
        const parsed = parseClientMessage(received, sender)
        expect(parsed).toEqual(received)
        // Without a known sender (before hello) it parses too, and parsing is idempotent.
        expect(parseClientMessage(received)).toEqual(parsed)
        expect(parseClientMessage(wire(parsed), sender)).toEqual(parsed)
      }),
      { numRuns: 300 },
    )
  })

  it('hub messages round-trip through JSON and parse to what was sent', () => {
    fc.assert(
      fc.property(hubMessageArb, (message) => {
        const received = wire(message)
        const parsed = parseHubMessage(received)
        expect(parsed).toEqual(received)
        expect(parseHubMessage(wire(parsed))).toEqual(parsed)
      }),
      { numRuns: 300 },
    )
  })

  it('unknown fields are ignored (and not passed on)', () => {
    const parsed = parseClientMessage({ ...HELLO, extra: 1, node: { ...NODE, color: 'red' } })
    expect(parsed).toEqual(HELLO)
    expect(parsed.type === 'hello' && 'color' in parsed.node).toBe(false)
    expect(parseEvent({ ...EVENTS[3], extra: true })).toEqual(EVENTS[3])
  })

  it('ids: 1-64 of [A-Za-z0-9_.-]; endpoint ids <node id>/<suffix>', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 70 }), idArb, idArb, (text, a, b) => {
        expect(isId(text)).toBe(/^[A-Za-z0-9_.-]{1,64}$/.test(text))
        expect(isId(a)).toBe(true)
        expect(isEndpointId(`${a}/${b}`)).toBe(true)
        expect(isEndpointId(`${a}/${b}`, a)).toBe(true)
        expect(isEndpointId(`${a}/${b}`, `${a}x`)).toBe(false)
        expect(isEndpointId(`${a}/${b}/${b}`)).toBe(false)
        expect(isEndpointId(a)).toBe(false)
      }),
      { numRuns: 300 },
    )
    expect(isId('a'.repeat(64))).toBe(true)
    expect(isId('a'.repeat(65))).toBe(false)
    expect(isId('')).toBe(false)
    expect(isId(7)).toBe(false)
    expect(isEndpointId('/x')).toBe(false)
    expect(isEndpointId('x/')).toBe(false)
  })

  it('metadata and options: at most 16 KiB serialized (bytes, not characters)', () => {
    expect(MAX_METADATA_BYTES).toBe(16 * 1024)
    expect(jsonObject(big(16 * 1024), 'm')).toEqual(big(16 * 1024))
    expectCode(() => jsonObject(big(16 * 1024 + 1), 'm'), 'ERR_TOPOLOGY_PROTOCOL')
    // 'é' is 2 bytes of UTF-8.
    expectCode(() => jsonObject({ k: 'é'.repeat(8190) }, 'm'), 'ERR_TOPOLOGY_PROTOCOL')
    expect(jsonObject({ k: 'é'.repeat(8188) }, 'm')).toBeDefined()
  })
})

describe('protocol: malformed input is ERR_TOPOLOGY_PROTOCOL', () => {
  const long = (n: number) => 'a'.repeat(n)
  // [description, message, sender?]
  const client: [string, unknown, string?][] = [
    ['not an object: null', null],
    ['not an object: array', [HELLO]],
    ['not an object: string', 'hello'],
    ['not an object: number', 1],
    ['no type', { protocol: 1 }],
    ['unknown type', { type: 'welcome' }],
    ['type of wrong type', { type: 1 }],
    ['protocol missing', mutate(HELLO, ['protocol'], undefined)],
    ['protocol a string', mutate(HELLO, ['protocol'], '1')],
    ['protocol 0', mutate(HELLO, ['protocol'], 0)],
    ['protocol fractional', mutate(HELLO, ['protocol'], 1.5)],
    ['node missing', mutate(HELLO, ['node'], undefined)],
    ['node an array', mutate(HELLO, ['node'], [])],
    ['node id with a space', mutate(HELLO, ['node', 'id'], 'a b')],
    ['node id with a slash', mutate(HELLO, ['node', 'id'], 'a/b')],
    ['node id non-ASCII', mutate(HELLO, ['node', 'id'], 'nöde')],
    ['node id empty', mutate(HELLO, ['node', 'id'], '')],
    ['node id too long', mutate(HELLO, ['node', 'id'], long(65))],
    ['node id a number', mutate(HELLO, ['node', 'id'], 12)],
    ['name a number', mutate(HELLO, ['node', 'name'], 5)],
    ['name too long', mutate(HELLO, ['node', 'name'], long(257))],
    ['pid 0', mutate(HELLO, ['node', 'pid'], 0)],
    ['pid negative', mutate(HELLO, ['node', 'pid'], -4)],
    ['pid fractional', mutate(HELLO, ['node', 'pid'], 4.5)],
    ['pid a string', mutate(HELLO, ['node', 'pid'], '4711')],
    ['pid unsafe', mutate(HELLO, ['node', 'pid'], 2 ** 53)],
    ['startTime missing', mutate(HELLO, ['node', 'startTime'], undefined)],
    ['startTime negative', mutate(HELLO, ['node', 'startTime'], -1)],
    ['pidNamespace too long', mutate(HELLO, ['node', 'pidNamespace'], long(65))],
    ['pidNamespace a number', mutate(HELLO, ['node', 'pidNamespace'], 4026531836)],
    ['endpoint address too long', mutate(HELLO, ['node', 'endpoint'], long(4097))],
    ['metadata missing', mutate(HELLO, ['node', 'metadata'], undefined)],
    ['metadata null', mutate(HELLO, ['node', 'metadata'], null)],
    ['metadata an array', mutate(HELLO, ['node', 'metadata'], [1])],
    ['metadata over 16 KiB', mutate(HELLO, ['node', 'metadata'], big(16 * 1024 + 1))],
    ['endpoints not an array', mutate(HELLO, ['endpoints'], {})],
    ['endpoint of another node', mutate(HELLO, ['endpoints', 0], { ...ENDPOINT, id: 'other/1', node: 'other' })],
    ['endpoint id prefix not its node', mutate(HELLO, ['endpoints', 0, 'id'], 'other/1')],
    ['endpoint id without a suffix', mutate(HELLO, ['endpoints', 0, 'id'], 'node-1')],
    ['endpoint id with a bad suffix', mutate(HELLO, ['endpoints', 0, 'id'], 'node-1/a b')],
    ['endpoint id with two slashes', mutate(HELLO, ['endpoints', 0, 'id'], 'node-1/a/b')],
    ['endpoint role unknown', mutate(HELLO, ['endpoints', 0, 'role'], 'both')],
    ['endpoint topic empty', mutate(HELLO, ['endpoints', 0, 'topic'], '')],
    ['endpoint topic too long', mutate(HELLO, ['endpoints', 0, 'topic'], long(1025))],
    ['endpoint options over 16 KiB', mutate(HELLO, ['endpoints', 0, 'options'], big(16 * 1024 + 1))],
    ['endpoint options a string', mutate(HELLO, ['endpoints', 0, 'options'], 'x')],
    ['history not an array', mutate(HELLO, ['history'], {})],
    ['history missing', mutate(HELLO, ['history'], undefined)],
    ['event not an object', mutate(HELLO, ['history', 0], 'event')],
    ['event of unknown type', mutate(HELLO, ['history', 0, 'type'], 'node-renamed')],
    ['event epoch negative', mutate(HELLO, ['history', 0, 'epoch'], -1)],
    ['event epoch above MAX_EPOCH (epoch + 1 must stay exact)', mutate(HELLO, ['history', 0, 'epoch'], MAX_EPOCH + 1)],
    ['event epoch a string', mutate(HELLO, ['history', 0, 'epoch'], '10')],
    ['event seq 0', mutate(HELLO, ['history', 0, 'seq'], 0)],
    ['event uid empty', mutate(HELLO, ['history', 0, 'uid'], '')],
    ['event uid too long', mutate(HELLO, ['history', 0, 'uid'], long(257))],
    ['event uid missing', mutate(HELLO, ['history', 0, 'uid'], undefined)],
    ['node-joined with a bad node', mutate(HELLO, ['history', 0, 'node', 'pid'], 0)],
    ['endpoint-added with a bad endpoint', mutate(HELLO, ['history', 1, 'endpoint', 'role'], 'x')],
    ['endpoint-removed of another node', mutate(HELLO, ['history', 2, 'endpoint'], 'other/1')],
    ['endpoint-removed node bad', mutate(HELLO, ['history', 2, 'node'], 'a b')],
    ['node-left reason unknown', mutate(HELLO, ['history', 3, 'reason'], 'bored')],
    ['node-left node an object', mutate(HELLO, ['history', 3, 'node'], NODE)],
    ['endpoint-add of another node', { type: 'endpoint-add', endpoint: { ...ENDPOINT, id: 'other/1', node: 'other' } }, 'node-1'],
    ['endpoint-add without endpoint', { type: 'endpoint-add' }, 'node-1'],
    ['endpoint-remove of another node', { type: 'endpoint-remove', endpoint: 'other/1' }, 'node-1'],
    ['endpoint-remove of a node id', { type: 'endpoint-remove', endpoint: 'node-1' }, 'node-1'],
  ]

  for (const [what, message, sender] of client) {
    it(`client: ${what}`, () => expectCode(() => parseClientMessage(message, sender), 'ERR_TOPOLOGY_PROTOCOL'))
  }

  const hub: [string, unknown][] = [
    ['not an object', 'welcome'],
    ['unknown type', { type: 'hello' }],
    ['welcome protocol missing', mutate(WELCOME, ['protocol'], undefined)],
    ['welcome hub id bad', mutate(WELCOME, ['hub'], 'hub 1')],
    ['welcome hub id too long', mutate(WELCOME, ['hub'], long(65))],
    ['welcome epoch negative', mutate(WELCOME, ['epoch'], -1)],
    ['welcome epoch at the safe-integer limit', mutate(WELCOME, ['epoch'], Number.MAX_SAFE_INTEGER)],
    ['welcome history not an array', mutate(WELCOME, ['history'], 'none')],
    ['welcome with a bad event', mutate(WELCOME, ['history', 1, 'endpoint', 'topic'], '')],
    ['events not an array', mutate(EVENTS_MESSAGE, ['events'], null)],
    ['events forget null', mutate(EVENTS_MESSAGE, ['forget'], null)],
    ['events forget nodes missing', mutate(EVENTS_MESSAGE, ['forget', 'nodes'], undefined)],
    ['events forget endpoints not an array', mutate(EVENTS_MESSAGE, ['forget', 'endpoints'], 'a/1')],
    ['events forget node id bad', mutate(EVENTS_MESSAGE, ['forget', 'nodes', 0], 'a/1')],
    ['events forget endpoint id bad', mutate(EVENTS_MESSAGE, ['forget', 'endpoints', 0], 'a')],
    ['rejected code too long', mutate(REJECTED, ['code'], long(65))],
    ['rejected code a number', mutate(REJECTED, ['code'], 1)],
    ['rejected message too long', mutate(REJECTED, ['message'], long(1025))],
  ]

  for (const [what, message] of hub) {
    it(`hub: ${what}`, () => expectCode(() => parseHubMessage(message), 'ERR_TOPOLOGY_PROTOCOL'))
  }

  it('another protocol version is ERR_TOPOLOGY_VERSION', () => {
    for (const protocol of [2, 3, 1000]) {
      expectCode(() => parseClientMessage({ ...HELLO, protocol }), 'ERR_TOPOLOGY_VERSION')
      expectCode(() => parseHubMessage({ ...WELCOME, protocol }), 'ERR_TOPOLOGY_VERSION')
    }
  })

  it('plain (non-JSON) objects: cycles and BigInt in metadata are protocol errors', () => {
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    expectCode(() => parseClientMessage({ ...HELLO, node: { ...NODE, metadata: cyclic } }), 'ERR_TOPOLOGY_PROTOCOL')
    expectCode(() => parseClientMessage({ ...HELLO, node: { ...NODE, metadata: { n: 1n } } }), 'ERR_TOPOLOGY_PROTOCOL')
  })
})

describe('protocol: fuzz', () => {
  const anything = fc.anything({
    withBigInt: true,
    withBoxedValues: true,
    withDate: true,
    withMap: true,
    withSet: true,
    withNullPrototype: true,
    withObjectString: true,
    withSparseArray: true,
    withTypedArray: true,
  })

  it('parsers throw nothing but TopologyError on fc.anything() and fc.jsonValue()', () => {
    fc.assert(
      fc.property(fc.oneof(anything, fc.jsonValue()), fc.option(idArb, { nil: undefined }), (value, sender) => {
        tolerant(() => parseClientMessage(value, sender))
        tolerant(() => parseHubMessage(value))
        tolerant(() => parseEvent(value))
      }),
      { numRuns: 1000 },
    )
  })

  it('messages with a type field and random content throw nothing but TopologyError', () => {
    const types = ['hello', 'endpoint-add', 'endpoint-remove', 'bye', 'welcome', 'events', 'rejected', 'large']
    fc.assert(
      fc.property(fc.constantFrom(...types), fc.dictionary(fc.constantFrom('protocol', 'node', 'endpoints', 'history', 'endpoint', 'hub', 'epoch', 'events', 'forget', 'code', 'message'), fc.oneof(anything, fc.jsonValue())), (type, fields) => {
        const value = { ...fields, type }
        tolerant(() => parseClientMessage(value, 'node-1'))
        tolerant(() => parseHubMessage(value))
      }),
      { numRuns: 1000 },
    )
  })

  it('valid messages with one value replaced or deleted: parsed, or a TopologyError', () => {
    const messageArb = fc.oneof(
      clientMessageArb.map(([sender, message]) => ({ sender, message: wire(message), side: 'client' as const })),
      hubMessageArb.map((message) => ({ sender: undefined, message: wire(message), side: 'hub' as const })),
    )
    fc.assert(
      fc.property(
        messageArb.chain((sample) =>
          fc.tuple(fc.constant(sample), fc.constantFrom(...paths(sample.message)), fc.option(fc.jsonValue({ maxDepth: 2 }), { nil: undefined })),
        ),
        ([{ sender, message, side }, path, to]) => {
          const mutated = mutate(message, path, to)
          const parse = side === 'client' ? () => parseClientMessage(mutated, sender) : () => parseHubMessage(mutated)
          let parsed: unknown
          try {
            parsed = parse()
          } catch (error) {
            if (!(error instanceof TopologyError)) throw error
            return
          }
          // Whatever passes is a valid message: serializable, and stable under re-parsing.
          const again = side === 'client' ? parseClientMessage(wire(parsed), sender) : parseHubMessage(wire(parsed))
          expect(again).toEqual(wire(parsed))
        },
      ),
      { numRuns: 1500 },
    )
  })
})
