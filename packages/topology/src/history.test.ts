// Property tests of History: a set of events keyed by uid, in (epoch, seq, uid) order, whose
// derived state is a join of the events (docs/PROTOCOL.md §4.4).
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  compareEvents,
  type EndpointInfo,
  eventEndpoint,
  eventNode,
  History,
  LEAVE_REASONS,
  type LeaveReason,
  type NodeInfo,
  type TopologyEvent,
} from './history.js'

// ---- helpers (self-contained) ----

const NODES = ['a', 'b', 'c', 'd', 'e'] as const
const SUFFIXES = ['p', 'q', 'r'] as const
const MINTERS = ['h1', 'h2', 'h3'] as const

function nodeInfo(id: string, tag: string): NodeInfo {
  return { id, name: `${id}@${tag}`, pid: 100, startTime: null, pidNamespace: null, endpoint: null, metadata: { tag } }
}

function endpointInfo(node: string, suffix: string, tag: string): EndpointInfo {
  return { id: `${node}/${suffix}`, node, topic: `topic-${tag}`, role: 'publisher', options: { tag } }
}

type Kind = TopologyEvent['type']

interface RawEvent {
  readonly minter: string
  readonly epoch: number
  readonly seq: number
  readonly kind: Kind
  readonly node: string
  readonly suffix: string
  readonly reason: LeaveReason
}

function makeEvent(raw: RawEvent): TopologyEvent {
  const stamp = { epoch: raw.epoch, seq: raw.seq, uid: `${raw.minter}:${raw.epoch}:${raw.seq}` }
  switch (raw.kind) {
    case 'node-joined':
      return { type: 'node-joined', ...stamp, node: nodeInfo(raw.node, stamp.uid) }
    case 'node-left':
      return { type: 'node-left', ...stamp, node: raw.node, reason: raw.reason }
    case 'endpoint-added':
      return { type: 'endpoint-added', ...stamp, endpoint: endpointInfo(raw.node, raw.suffix, stamp.uid) }
    case 'endpoint-removed':
      return { type: 'endpoint-removed', ...stamp, endpoint: `${raw.node}/${raw.suffix}`, node: raw.node }
  }
}

const kindArb: fc.Arbitrary<Kind> = fc.oneof(
  { weight: 4, arbitrary: fc.constant('node-joined' as const) },
  { weight: 1, arbitrary: fc.constant('node-left' as const) },
  { weight: 4, arbitrary: fc.constant('endpoint-added' as const) },
  { weight: 1, arbitrary: fc.constant('endpoint-removed' as const) },
)

/**
 * Events as several hubs may have minted them: duplicates of the same transition, conflicting
 * infos for one node, removals before additions, events of nodes that never joined. Uids are
 * unique (a uid names one event).
 */
const eventArb: fc.Arbitrary<TopologyEvent> = fc
  .record({
    minter: fc.constantFrom(...MINTERS),
    epoch: fc.integer({ min: 1, max: 3 }),
    seq: fc.integer({ min: 1, max: 12 }),
    kind: kindArb,
    node: fc.constantFrom(...NODES),
    suffix: fc.constantFrom(...SUFFIXES),
    reason: fc.constantFrom(...LEAVE_REASONS),
  })
  .map(makeEvent)

const eventsArb = (maxLength = 40): fc.Arbitrary<TopologyEvent[]> =>
  fc.uniqueArray(eventArb, { selector: (event) => event.uid, maxLength })

/** A pool of events and three (overlapping) subsets of it, in arbitrary arrival orders. */
const threeSubsetsArb = eventsArb(45).chain((pool) =>
  fc.tuple(
    fc.constant(pool),
    fc.shuffledSubarray(pool),
    fc.shuffledSubarray(pool),
    fc.shuffledSubarray(pool),
  ),
)

function sorted(events: readonly TopologyEvent[]): TopologyEvent[] {
  return [...events].sort(compareEvents)
}

function first<T extends TopologyEvent>(events: readonly T[]): T | undefined {
  return sorted(events)[0] as T | undefined
}

/** The derived state, computed the naive way from the rules of PROTOCOL.md §4.4. */
function reference(events: readonly TopologyEvent[]) {
  const joins = new Map<string, TopologyEvent[]>()
  const lefts = new Map<string, TopologyEvent[]>()
  const adds = new Map<string, TopologyEvent[]>()
  const removes = new Map<string, TopologyEvent[]>()
  const push = (map: Map<string, TopologyEvent[]>, key: string, event: TopologyEvent) => {
    const list = map.get(key)
    if (list) list.push(event)
    else map.set(key, [event])
  }
  for (const event of events) {
    if (event.type === 'node-joined') push(joins, event.node.id, event)
    else if (event.type === 'node-left') push(lefts, event.node, event)
    else if (event.type === 'endpoint-added') push(adds, event.endpoint.id, event)
    else push(removes, event.endpoint, event)
  }
  const nodeUp = (id: string) => joins.has(id) && !lefts.has(id)
  const upNodes = [...joins.keys()]
    .filter(nodeUp)
    .sort((x, y) => compareEvents(first(joins.get(x)!)!, first(joins.get(y)!)!))
  const upEndpoints = (nodeId: string) =>
    [...adds.keys()]
      .filter((id) => id.startsWith(`${nodeId}/`) && !removes.has(id) && nodeUp(nodeId))
      .sort((x, y) => compareEvents(first(adds.get(x)!)!, first(adds.get(y)!)!))
  const nodeInfoOf = (id: string) => {
    const join = first(joins.get(id) ?? [])
    return join?.type === 'node-joined' ? join.node : undefined
  }
  const endpointInfoOf = (id: string) => {
    const add = first(adds.get(id) ?? [])
    return add?.type === 'endpoint-added' ? add.endpoint : undefined
  }
  const reasonOf = (id: string) => {
    const left = first(lefts.get(id) ?? [])
    return left?.type === 'node-left' ? left.reason : undefined
  }
  const departed = [
    ...[...lefts.keys()].map((id) => ({ kind: 'node' as const, id, at: first(lefts.get(id)!)! })),
    ...[...removes.keys()]
      .filter((id) => !lefts.has(id.slice(0, id.indexOf('/'))))
      .map((id) => ({ kind: 'endpoint' as const, id, at: first(removes.get(id)!)! })),
  ].sort((x, y) => compareEvents(x.at, y.at))
  return { nodeUp, upNodes, upEndpoints, nodeInfoOf, endpointInfoOf, reasonOf, departed, lefts, removes }
}

/**
 * Everything observable about a history, for equality checks. Ids are those its events
 * mention (nodeIds()/endpointIds() are checked against them separately, including after `forget`).
 */
function observe(history: History) {
  const events = history.events()
  const nodeIds = [...new Set(events.map((event) => eventNode(event)))].sort()
  const endpointIds = [...new Set(events.map((event) => eventEndpoint(event)).filter((id) => id !== undefined))].sort()
  return {
    events,
    size: history.size,
    state: history.state(),
    departed: history.departed().map((entry) => [entry.kind, entry.id, entry.at.uid]),
    nodeIds,
    endpointIds,
    nodes: nodeIds.map((id) => [id, history.isNodeUp(id), history.hasLeft(id), history.leaveReason(id), history.nodeInfo(id)]),
    endpoints: endpointIds.map((id) => [
      id,
      history.isEndpointUp(id),
      history.isEndpointRemoved(id),
      history.endpointInfo(id),
    ]),
  }
}

function union(...lists: (readonly TopologyEvent[])[]): TopologyEvent[] {
  const byUid = new Map<string, TopologyEvent>()
  for (const list of lists) for (const event of list) byUid.set(event.uid, event)
  return sorted([...byUid.values()])
}

function expectSortedStrictly(events: readonly TopologyEvent[]): void {
  for (let i = 1; i < events.length; i++) expect(compareEvents(events[i - 1]!, events[i]!)).toBe(-1)
}

// ---- tests ----

describe('compareEvents', () => {
  const stampArb = fc.record({
    epoch: fc.integer({ min: 0, max: 3 }),
    seq: fc.integer({ min: 1, max: 3 }),
    uid: fc.constantFrom('a', 'b', 'B', 'a:1', 'ä', ''),
  })

  it('is a total order: antisymmetric, transitive, zero only on equal keys', () => {
    fc.assert(
      fc.property(stampArb, stampArb, stampArb, (a, b, c) => {
        expect(compareEvents(a, b) + compareEvents(b, a)).toBe(0)
        expect([-1, 0, 1]).toContain(compareEvents(a, b))
        expect(compareEvents(a, b) === 0).toBe(a.epoch === b.epoch && a.seq === b.seq && a.uid === b.uid)
        if (compareEvents(a, b) <= 0 && compareEvents(b, c) <= 0) expect(compareEvents(a, c)).toBeLessThanOrEqual(0)
      }),
      { numRuns: 500 },
    )
  })

  it('orders by epoch first, then seq, then uid code units', () => {
    expect(compareEvents({ epoch: 1, seq: 9, uid: 'z' }, { epoch: 2, seq: 1, uid: 'a' })).toBe(-1)
    expect(compareEvents({ epoch: 2, seq: 2, uid: 'a' }, { epoch: 2, seq: 10, uid: 'a' })).toBe(-1)
    expect(compareEvents({ epoch: 2, seq: 2, uid: 'B' }, { epoch: 2, seq: 2, uid: 'a' })).toBe(-1)
    expect(compareEvents({ epoch: 2, seq: 2, uid: 'a' }, { epoch: 2, seq: 2, uid: 'a' })).toBe(0)
  })
})

describe('History', () => {
  it('lists its events in (epoch, seq, uid) order whatever the insertion order', () => {
    fc.assert(
      fc.property(eventsArb().chain((pool) => fc.tuple(fc.constant(pool), fc.shuffledSubarray(pool, { minLength: pool.length }))), ([pool, shuffled]) => {
        const history = new History(shuffled)
        expect(history.size).toBe(pool.length)
        expect(history.events()).toEqual(sorted(pool))
        expectSortedStrictly(history.events())
        for (const event of pool) expect(history.has(event.uid)).toBe(true)
        expect(history.maxEpoch).toBe(Math.max(0, ...pool.map((event) => event.epoch)))
        // The same set in another order gives exactly the same history.
        expect(observe(history)).toEqual(observe(new History(sorted(pool))))
      }),
      { numRuns: 300 },
    )
  })

  it('derives the state of PROTOCOL.md §4.4 (first join/add speaks, left/removed are final)', () => {
    fc.assert(
      fc.property(eventsArb(), (events) => {
        const history = new History(events)
        const ref = reference(events)
        expect(history.upNodes()).toEqual(ref.upNodes)
        for (const id of NODES) {
          expect(history.isNodeUp(id)).toBe(ref.nodeUp(id))
          expect(history.hasLeft(id)).toBe(ref.lefts.has(id))
          expect(history.leaveReason(id)).toBe(ref.reasonOf(id))
          expect(history.nodeInfo(id)).toEqual(ref.nodeInfoOf(id))
          expect(history.upEndpoints(id)).toEqual(ref.upEndpoints(id))
          for (const suffix of SUFFIXES) {
            const endpoint = `${id}/${suffix}`
            expect(history.isEndpointUp(endpoint)).toBe(ref.upEndpoints(id).includes(endpoint))
            expect(history.isEndpointRemoved(endpoint)).toBe(ref.removes.has(endpoint))
            expect(history.endpointInfo(endpoint)).toEqual(ref.endpointInfoOf(endpoint))
          }
        }
        expect(history.state()).toEqual(
          ref.upNodes.map((id) => ({
            node: ref.nodeInfoOf(id),
            endpoints: ref.upEndpoints(id).map((endpoint) => ref.endpointInfoOf(endpoint)),
          })),
        )
        expect(history.departed().map((entry) => [entry.kind, entry.id, entry.at.uid])).toEqual(
          ref.departed.map((entry) => [entry.kind, entry.id, entry.at.uid]),
        )
        // Every id an event mentions is listed.
        expect(new Set(history.nodeIds())).toEqual(new Set(events.map((event) => eventNode(event))))
        expect(new Set(history.endpointIds())).toEqual(
          new Set(events.map((event) => eventEndpoint(event)).filter((id) => id !== undefined)),
        )
      }),
      { numRuns: 300 },
    )
  })

  it('add is idempotent: a uid already held changes nothing', () => {
    fc.assert(
      fc.property(eventsArb(), (events) => {
        const history = new History(events)
        const before = observe(history)
        for (const event of events) expect(history.add(event)).toBe(false)
        expect(history.merge(events)).toEqual([])
        expect(history.merge(history.events())).toEqual([])
        expect(observe(history)).toEqual(before)
        // Replaying a history any number of times into an empty one gives the same history.
        const replayed = new History([...events, ...events.slice().reverse(), ...events])
        expect(observe(replayed)).toEqual(before)
      }),
      { numRuns: 200 },
    )
  })

  it('merge returns exactly the new events, in order', () => {
    fc.assert(
      fc.property(threeSubsetsArb, ([, a, b]) => {
        const history = new History(a)
        const held = new Set(a.map((event) => event.uid))
        const fresh = history.merge(b)
        expect(fresh).toEqual(sorted(b.filter((event) => !held.has(event.uid))))
        expect(history.events()).toEqual(union(a, b))
      }),
      { numRuns: 200 },
    )
  })

  it('merge is set union: commutative and associative (same events, same order, same state)', () => {
    fc.assert(
      fc.property(threeSubsetsArb, ([, a, b, c]) => {
        const ab = new History(a)
        ab.merge(b)
        const ba = new History(b)
        ba.merge(a)
        expect(observe(ab)).toEqual(observe(ba))

        // (a ∪ b) ∪ c
        const left = new History(a)
        left.merge(b)
        left.merge(c)
        // a ∪ (b ∪ c)
        const bc = new History(b)
        bc.merge(c)
        const right = new History(a)
        right.merge(bc.events())
        // c ∪ (b ∪ a), merging one event at a time in reverse
        const other = new History(c)
        for (const event of [...b, ...a].reverse()) other.add(event)
        expect(observe(left)).toEqual(observe(right))
        expect(observe(left)).toEqual(observe(other))
        expect(left.events()).toEqual(union(a, b, c))
        expectSortedStrictly(left.events())
      }),
      { numRuns: 200 },
    )
  })

  it('events() is a copy', () => {
    const event = makeEvent({ minter: 'h1', epoch: 1, seq: 1, kind: 'node-joined', node: 'a', suffix: 'p', reason: 'closed' })
    const history = new History([event])
    history.events().pop()
    expect(history.size).toBe(1)
  })

  describe('forget', () => {
    const forgetArb = threeSubsetsArb.chain(([pool]) =>
      fc.tuple(
        fc.constant(pool),
        fc.subarray<string>([...NODES]),
        fc.subarray(NODES.flatMap((node) => SUFFIXES.map((suffix) => `${node}/${suffix}`))),
      ),
    )

    it('drops whole entities: every event of a forgotten node (with its endpoints) or endpoint, nothing else', () => {
      fc.assert(
        fc.property(forgetArb, ([pool, nodes, endpoints]) => {
          const history = new History(pool)
          const dropNodes = new Set(nodes)
          const dropEndpoints = new Set(endpoints)
          const kept = pool.filter((event) => {
            if (dropNodes.has(eventNode(event))) return false
            const endpoint = eventEndpoint(event)
            return endpoint === undefined || !dropEndpoints.has(endpoint)
          })
          const dropped = history.forget({ nodes, endpoints })
          expect(dropped).toBe(pool.length - kept.length)
          expect(history.size).toBe(kept.length)
          // Exactly the history of the kept events: no half-forgotten entity, same derived state.
          const expected = observe(new History(kept))
          expect(observe(history)).toEqual(expected)
          for (const id of nodes) {
            expect(history.isNodeUp(id)).toBe(false)
            expect(history.nodeInfo(id)).toBeUndefined()
            expect([...history.nodeIds()]).not.toContain(id)
          }
          for (const id of endpoints) {
            expect(history.isEndpointUp(id)).toBe(false)
            expect(history.endpointInfo(id)).toBeUndefined()
          }
          // Every id still listed is at least one the kept events mention, or a node of one.
          expect(new Set(history.endpointIds())).toEqual(new Set(expected.endpointIds))
          for (const id of expected.nodeIds) expect([...history.nodeIds()]).toContain(id)
          // Forgetting again is a no-op.
          expect(history.forget({ nodes, endpoints })).toBe(0)
          expect(observe(history)).toEqual(expected)
        }),
        { numRuns: 300 },
      )
    })

    it('forgetting in two steps equals forgetting at once', () => {
      fc.assert(
        fc.property(forgetArb, fc.nat(), fc.nat(), ([pool, nodes, endpoints], cutNodes, cutEndpoints) => {
          const once = new History(pool)
          once.forget({ nodes, endpoints })
          const twice = new History(pool)
          const n = cutNodes % (nodes.length + 1)
          const e = cutEndpoints % (endpoints.length + 1)
          const first = twice.forget({ nodes: nodes.slice(0, n), endpoints: endpoints.slice(e) })
          const second = twice.forget({ nodes: nodes.slice(n), endpoints: endpoints.slice(0, e) })
          expect(first + second).toBe(pool.length - once.size)
          expect(observe(twice)).toEqual(observe(once))
        }),
        { numRuns: 200 },
      )
    })

    // Forgetting the last event that mentions a node (one with no join/left of its own) also
    // drops the node record, so nodeIds() lists no id that no event mentions.
    it('nodeIds() lists only ids that some held event mentions, also after forget', () => {
      const added = makeEvent({ minter: 'h1', epoch: 1, seq: 1, kind: 'endpoint-added', node: 'a', suffix: 'p', reason: 'closed' })
      const history = new History([added])
      history.forget({ nodes: [], endpoints: ['a/p'] })
      expect(history.size).toBe(0)
      expect([...history.nodeIds()]).toEqual([])
    })

    it('a forgotten entity comes back only through its events (History keeps no tombstones)', () => {
      fc.assert(
        fc.property(forgetArb, ([pool, nodes, endpoints]) => {
          const history = new History(pool)
          history.forget({ nodes, endpoints })
          history.merge(pool)
          expect(observe(history)).toEqual(observe(new History(pool)))
        }),
        { numRuns: 100 },
      )
    })
  })
})
