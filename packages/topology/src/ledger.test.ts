// Property tests of the hub's pure logic (Ledger): convergence across a hub failover, no lost
// or reordered events, the design notes' scenarios (docs/PROTOCOL.md §8), bounded history.
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
import { type Hello, Ledger } from './ledger.js'
import { Observer } from '../test/observer.ts'

// ---- helpers (self-contained) ----

function node(id: string, extra: Partial<NodeInfo> = {}): NodeInfo {
  return { id, name: `name-${id}`, pid: 1000, startTime: null, pidNamespace: null, endpoint: null, metadata: {}, ...extra }
}

function endpoint(nodeId: string, suffix: string, topic = `topic-${suffix}`): EndpointInfo {
  return { id: `${nodeId}/${suffix}`, node: nodeId, topic, role: 'publisher', options: {} }
}

const minterOf = (event: TopologyEvent): string => event.uid.slice(0, event.uid.indexOf(':'))
const uids = (events: readonly TopologyEvent[]): string[] => events.map((event) => event.uid)

type Op =
  | { readonly kind: 'join' }
  | { readonly kind: 'add'; readonly pick: number }
  | { readonly kind: 'remove'; readonly pick: number }
  | { readonly kind: 'leave'; readonly pick: number; readonly reason: LeaveReason }

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.constant({ kind: 'join' } as const) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('add' as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('remove' as const), pick: fc.nat() }) },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('leave' as const), pick: fc.nat(), reason: fc.constantFrom(...LEAVE_REASONS) }),
  },
)

interface Ids {
  readonly prefix: string
  next: number
}

/**
 * Drives a ledger the way a hub does: joins through integrate (a new node's hello), endpoint
 * adds/removes of up nodes, leaves. Returns the broadcast batches, in order. With `compact`,
 * compacts after every departure, as the hub does.
 */
function drive(ledger: Ledger, ops: readonly Op[], ids: Ids, compact = false): TopologyEvent[] {
  const minted: TopologyEvent[] = []
  for (const op of ops) {
    const up = ledger.history.upNodes()
    switch (op.kind) {
      case 'join': {
        const result = ledger.integrate({ node: node(`${ids.prefix}${ids.next++}`), endpoints: [], history: [] })
        minted.push(...result.events)
        break
      }
      case 'add': {
        if (up.length === 0) break
        const event = ledger.addEndpoint(endpoint(up[op.pick % up.length]!, `${ids.prefix}e${ids.next++}`))
        if (event) minted.push(event)
        break
      }
      case 'remove': {
        const live = ledger.history.allUpEndpoints()
        if (live.length === 0) break
        const id = live[op.pick % live.length]!
        const event = ledger.removeEndpoint(ledger.history.endpointInfo(id)!.node, id)
        if (event) minted.push(event)
        if (compact) ledger.compact()
        break
      }
      case 'leave': {
        if (up.length === 0) break
        const event = ledger.nodeLeft(up[op.pick % up.length]!, op.reason)
        if (event) minted.push(event)
        if (compact) ledger.compact()
        break
      }
    }
  }
  return minted
}

interface Client {
  readonly info: NodeInfo
  readonly endpoints: readonly EndpointInfo[]
  /** The client's history when the old hub died. */
  readonly history: readonly TopologyEvent[]
}

interface Failover {
  readonly hub: Ledger
  /** Accepted clients in hello order, with the hub's history as their welcome carried it. */
  readonly sessions: { client: Client; welcome: TopologyEvent[]; batch: number }[]
  /** Every `events` broadcast, in order (one per hello, then the verify step's node-lefts). */
  readonly batches: TopologyEvent[][]
  /** The events the new hub minted, in mint order. */
  readonly minted: TopologyEvent[]
}

/**
 * A new hub integrates the hellos in the given order (PROTOCOL.md §5.3), then "verifies": every
 * node still up without a connection gets node-left `died`.
 */
function failover(hub: Ledger, order: readonly Client[], diesAfter = order.length): Failover {
  const sessions: Failover['sessions'] = []
  const batches: TopologyEvent[][] = []
  const minted: TopologyEvent[] = []
  for (const client of order.slice(0, diesAfter)) {
    const before = new Set(hub.history.events().map((event) => event.uid))
    const hello: Hello = { node: client.info, endpoints: client.endpoints, history: client.history }
    const result = hub.integrate(hello)
    expect(result.accepted).toBe(true)
    // integrate returns exactly what is new to the hub, in order: merged, then minted.
    const after = hub.history.events()
    expect(new Set(uids(result.events))).toEqual(new Set(uids(after).filter((uid) => !before.has(uid))))
    minted.push(...result.events.filter((event) => minterOf(event) === hub.minter))
    sessions.push({ client, welcome: after, batch: batches.length })
    batches.push(result.events)
  }
  // A hub that dies before everyone said hello never gets to verify.
  if (diesAfter < order.length) return { hub, sessions, batches, minted }
  const connected = new Set(order.map((client) => client.info.id))
  const left: TopologyEvent[] = []
  for (const id of hub.history.upNodes()) {
    if (connected.has(id)) continue
    const event = hub.nodeLeft(id, 'died')
    expect(event).toBeDefined()
    left.push(event!)
  }
  minted.push(...left)
  batches.push(left)
  return { hub, sessions, batches, minted }
}

/**
 * A client adopts the hub's history as the real client does (PROTOCOL.md §5.4): its history
 * before the failover, replaced by the welcome, then every later broadcast merged. Returns
 * its final history and its observer.
 */
function adopt(
  run: Failover,
  session: Failover['sessions'][number],
  observer = new Observer(),
  received = run.batches.length,
): { history: History; observer: Observer } {
  let history = new History(session.client.history)
  observer.update(history)
  history = new History(session.welcome)
  observer.update(history)
  for (const batch of run.batches.slice(session.batch + 1, Math.max(session.batch + 1, received))) {
    if (batch.length === 0) continue
    history.merge(batch)
    observer.update(history)
  }
  return { history, observer }
}

function expectInOrder(events: readonly TopologyEvent[]): void {
  for (let i = 1; i < events.length; i++) expect(compareEvents(events[i - 1]!, events[i]!)).toBe(-1)
}

// ---- tests ----

describe('Ledger: convergence across a hub failover', () => {
  it('every client ends with the new hub history and state, nothing lost or reordered', () => {
    fc.assert(
      fc.property(fc.gen(), (g) => {
        // The old hub and, sometimes, a second hub elected in a split brain from a prefix of
        // the first one's history (both minted for a while).
        const oldEpoch = g(fc.integer, { min: 1, max: 1000 })
        const old = new Ledger({ minter: 'old', epoch: oldEpoch })
        drive(old, g(fc.array, opArb, { minLength: 5, maxLength: 40 }), { prefix: 'n', next: 0 })
        const oldEvents = old.history.events()
        let splitEvents: TopologyEvent[] = []
        if (g(fc.boolean)) {
          const cut = g(fc.nat, { max: oldEvents.length })
          const split = new Ledger({ minter: 'split', epoch: oldEpoch, history: oldEvents.slice(0, cut) })
          drive(split, g(fc.array, opArb, { maxLength: 15 }), { prefix: 's', next: 0 })
          splitEvents = split.history.events().filter((event) => minterOf(event) === 'split')
        }
        const pool = new History([...oldEvents, ...splitEvents])
        const poolEvents = pool.events()

        // Clients: some of the nodes up in the pool (the others died), and fresh nodes.
        const clients: Client[] = []
        const up = pool.upNodes()
        for (const id of g(fc.subarray, up, { minLength: Math.min(1, up.length) })) {
          // What it held: a prefix of a hub's stream, or any subset (conflicting sessions).
          const view = g(fc.constantFrom, 'old-prefix', 'split-prefix', 'subset', 'full')
          const history =
            view === 'old-prefix'
              ? oldEvents.slice(0, g(fc.nat, { max: oldEvents.length }))
              : view === 'split-prefix'
                ? [...oldEvents, ...splitEvents].sort(compareEvents).slice(0, g(fc.nat, { max: poolEvents.length }))
                : view === 'subset'
                  ? g(fc.subarray, poolEvents)
                  : poolEvents
          // Its own endpoints: some removed while there was no hub, some added.
          const kept = g(fc.subarray, pool.upEndpoints(id)).map((endpointId) => pool.endpointInfo(endpointId)!)
          const added = Array.from({ length: g(fc.nat, { max: 2 }) }, (_, k) => endpoint(id, `late${k}`))
          clients.push({ info: pool.nodeInfo(id)!, endpoints: [...kept, ...added], history })
        }
        const fresh = g(fc.nat, { max: 2 })
        for (let k = 0; k < fresh; k++) {
          const id = `f${k}`
          const count = g(fc.nat, { max: 2 })
          clients.push({ info: node(id), endpoints: Array.from({ length: count }, (_, j) => endpoint(id, `x${j}`)), history: [] })
        }
        if (clients.length === 0) return

        // The new hub: one client's history, or a just-started client's (empty), with an epoch
        // above every epoch minted before (CLOCK_MONOTONIC).
        const owner = g(fc.nat, { max: clients.length - 1 })
        const startEmpty = g(fc.boolean)
        const initial = startEmpty ? [] : clients[owner]!.history
        const epoch = pool.maxEpoch + g(fc.integer, { min: 1, max: 5 })
        const hub = new Ledger({ minter: clients[owner]!.info.id, epoch, history: initial })
        const order = g(fc.shuffledSubarray, clients, { minLength: clients.length })
        const run = failover(hub, order)
        const final = hub.history.events()

        // 1. Convergence: every client ends with the hub's events, in the same order, and the
        //    same state; what each reported equals that state (checked by Observer).
        for (const session of run.sessions) {
          const { history } = adopt(run, session)
          expect(history.events()).toEqual(final)
          expect(history.state()).toEqual(hub.history.state())
        }
        // The domain is exactly the connected clients.
        expect(hub.history.upNodes().sort()).toEqual(clients.map((client) => client.info.id).sort())

        // 3. No event lost: every old event any client (or the hub) held is in the final
        //    history, and nothing else of the old hubs.
        const held = new Set([...initial, ...clients.flatMap((client) => client.history)].map((event) => event.uid))
        const oldInFinal = final.filter((event) => minterOf(event) !== hub.minter)
        expect(new Set(uids(oldInFinal))).toEqual(held)
        // ...in their mint order (per minting hub), and in event order overall.
        expectInOrder(final)
        expect(uids(final.filter((event) => minterOf(event) === 'old'))).toEqual(
          uids(oldEvents.filter((event) => held.has(event.uid))),
        )
        expect(uids(final.filter((event) => minterOf(event) === 'split'))).toEqual(
          uids(splitEvents.filter((event) => held.has(event.uid))),
        )
        // The new hub's events are in its mint order, after every event of the old hubs.
        const newInFinal = final.filter((event) => minterOf(event) === hub.minter)
        expect(uids(newInFinal)).toEqual(uids(run.minted))
        expect(final.slice(oldInFinal.length)).toEqual(newInFinal)
        for (const event of newInFinal) expect(event.epoch).toBeGreaterThan(pool.maxEpoch)

        // 7. The node is the authority on its own endpoints: whatever other hellos bring
        //    back, its endpoints in the final state are exactly those it holds.
        for (const client of clients) {
          expect(hub.history.upEndpoints(client.info.id).sort()).toEqual(client.endpoints.map((info) => info.id).sort())
        }
      }),
      { numRuns: 250 },
    )
  })

  it('the hello order does not change the final state, and the set of events differs only in what the new hub minted', () => {
    fc.assert(
      fc.property(fc.gen(), (g) => {
        const old = new Ledger({ minter: 'old', epoch: 7 })
        drive(old, g(fc.array, opArb, { minLength: 1, maxLength: 25 }), { prefix: 'n', next: 0 })
        const oldEvents = old.history.events()
        const clients: Client[] = old.history.upNodes().map((id) => {
          return {
            info: old.history.nodeInfo(id)!,
            endpoints: old.history.upEndpoints(id).map((endpointId) => old.history.endpointInfo(endpointId)!),
            history: oldEvents.slice(0, g(fc.integer, { min: 0, max: oldEvents.length })),
          }
        })
        clients.push({ info: node('fresh'), endpoints: [endpoint('fresh', 'a')], history: [] })
        // Join order may differ (who re-minted a join first); the state as a set may not.
        const normalize = (history: History) =>
          history
            .state()
            .map((entry) => ({ node: entry.node, endpoints: [...entry.endpoints].sort((x, y) => (x.id < y.id ? -1 : 1)) }))
            .sort((x, y) => (x.node.id < y.node.id ? -1 : 1))
        const states: unknown[] = []
        const oldParts: string[][] = []
        for (let round = 0; round < 2; round++) {
          const hub = new Ledger({ minter: 'new', epoch: 8, history: [] })
          failover(hub, g(fc.shuffledSubarray, clients, { minLength: clients.length }))
          states.push(normalize(hub.history))
          oldParts.push(uids(hub.history.events().filter((event) => minterOf(event) === 'old')))
        }
        expect(states[1]).toEqual(states[0])
        expect(oldParts[1]).toEqual(oldParts[0])
      }),
      { numRuns: 150 },
    )
  })
})

describe('Ledger: two failovers in a row', () => {
  it('a hub that dies while clients are still saying hello: the next one converges, reports stay exactly-once', () => {
    fc.assert(
      fc.property(fc.gen(), (g) => {
        const old = new Ledger({ minter: 'old', epoch: 5 })
        drive(old, g(fc.array, opArb, { minLength: 5, maxLength: 30 }), { prefix: 'n', next: 0 })
        const oldEvents = old.history.events()
        const up = old.history.upNodes()
        const clients: Client[] = g(fc.subarray, up, { minLength: Math.min(1, up.length) }).map((id) => ({
          info: old.history.nodeInfo(id)!,
          endpoints: g(fc.subarray, old.history.upEndpoints(id)).map((endpointId) => old.history.endpointInfo(endpointId)!),
          history: g(fc.boolean) ? oldEvents.slice(0, g(fc.nat, { max: oldEvents.length })) : g(fc.subarray, oldEvents),
        }))
        clients.push({ info: node('fresh'), endpoints: [endpoint('fresh', 'a')], history: [] })

        // Hub 1 dies after `k` hellos; each welcomed client got its welcome and some of the
        // broadcasts that followed.
        const first = g(fc.nat, { max: clients.length - 1 })
        const hub1 = new Ledger({ minter: 'hub1', epoch: 10, history: g(fc.boolean) ? clients[first]!.history : [] })
        const order1 = g(fc.shuffledSubarray, clients, { minLength: clients.length })
        const k = g(fc.integer, { min: 1, max: clients.length })
        const run1 = failover(hub1, order1, k)
        const observers = new Map<string, Observer>()
        const second: Client[] = clients.map((client) => {
          const session = run1.sessions.find((s) => s.client === client)
          const observer = new Observer()
          observers.set(client.info.id, observer)
          if (session === undefined) {
            observer.update(new History(client.history))
            return client
          }
          const received = g(fc.integer, { min: session.batch + 1, max: run1.batches.length })
          const { history } = adopt(run1, session, observer, received)
          return { ...client, history: history.events() }
        })

        // Hub 2: some client's current history (or a fresh start), a later epoch.
        const owner = second[g(fc.nat, { max: second.length - 1 })]!
        const hub2 = new Ledger({ minter: 'hub2', epoch: 20, history: g(fc.boolean) ? owner.history : [] })
        const run2 = failover(hub2, g(fc.shuffledSubarray, second, { minLength: second.length }))
        const final = hub2.history.events()
        for (const session of run2.sessions) {
          // The same tracker goes on across both hubs: still each id up once, down once.
          const { history } = adopt(run2, session, observers.get(session.client.info.id)!)
          expect(history.events()).toEqual(final)
        }
        expectInOrder(final)
        expect(hub2.history.upNodes().sort()).toEqual(clients.map((client) => client.info.id).sort())
        // Nothing any client held is lost (what only hub 1 had died with it), and hub 2's
        // events come last.
        for (const uid of uids(second.flatMap((client) => client.history))) expect(hub2.history.has(uid)).toBe(true)
        const firstNew = final.findIndex((event) => minterOf(event) === 'hub2')
        if (firstNew >= 0) expect(final.slice(firstNew).every((event) => minterOf(event) === 'hub2')).toBe(true)
      }),
      { numRuns: 150 },
    )
  })
})

describe('Ledger: minting and order', () => {
  it('every minted event stays in the history in mint order, stamped <minter>:<epoch>:<seq>', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 60 }), fc.integer({ min: 0, max: 1e9 }), (ops, epoch) => {
        const ledger = new Ledger({ minter: 'hub', epoch })
        const minted = drive(ledger, ops, { prefix: 'n', next: 0 })
        expect(ledger.history.events()).toEqual(minted)
        // An empty history's highest epoch counts as 0: the ledger mints at epoch >= 1.
        const actual = Math.max(epoch, 1)
        expect(ledger.epoch).toBe(actual)
        minted.forEach((event, index) => {
          expect(event.epoch).toBe(actual)
          expect(event.seq).toBe(index + 1)
          expect(event.uid).toBe(`hub:${actual}:${index + 1}`)
        })
      }),
      { numRuns: 200 },
    )
  })

  it('starts above the epoch of the history it is given', () => {
    const history = [{ type: 'node-joined', epoch: 40, seq: 3, uid: 'x:40:3', node: node('a') } as const]
    expect(new Ledger({ minter: 'h', epoch: 10, history }).epoch).toBe(41)
    expect(new Ledger({ minter: 'h', epoch: 50, history }).epoch).toBe(50)
    const ledger = new Ledger({ minter: 'h', epoch: 10, history })
    const event = ledger.nodeLeft('a', 'closed')!
    expect(event).toMatchObject({ epoch: 41, seq: 1, uid: 'h:41:1' })
    expect(ledger.history.events().map((e) => e.uid)).toEqual(['x:40:3', 'h:41:1'])
  })

  it('moves past a merged epoch >= its own, restarting seq, so later mints order after everything', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 100 }),
        fc.array(fc.record({ epoch: fc.integer({ min: 0, max: 200 }), seq: fc.integer({ min: 1, max: 5 }) }), {
          maxLength: 8,
        }),
        (epoch, stamps) => {
          const ledger = new Ledger({ minter: 'hub', epoch })
          ledger.integrate({ node: node('self'), endpoints: [], history: [] })
          const foreign = stamps.map(
            ({ epoch: e, seq }, i) =>
              ({ type: 'node-joined', epoch: e, seq, uid: `other${i}:${e}:${seq}`, node: node(`o${i}`) }) as const,
          )
          const fresh = ledger.merge(foreign)
          expect(fresh).toEqual([...foreign].sort(compareEvents))
          const highest = Math.max(0, ...stamps.map((stamp) => stamp.epoch))
          const expectedEpoch = highest >= epoch ? highest + 1 : epoch
          expect(ledger.epoch).toBe(expectedEpoch)
          const next = ledger.nodeLeft('self', 'closed')!
          expect(next.epoch).toBe(expectedEpoch)
          expect(next.seq).toBe(highest >= epoch ? 1 : 2)
          // The newest event is last in the history.
          expect(ledger.history.events().at(-1)).toEqual(next)
          // Merging old epochs afterwards does not move it.
          ledger.merge([{ type: 'node-left', epoch: 0, seq: 1, uid: 'z:0:1', node: 'o0', reason: 'lost' }])
          expect(ledger.epoch).toBe(expectedEpoch)
        },
      ),
      { numRuns: 200 },
    )
  })

  it('the exact bump: merging an event at its own epoch moves to epoch + 1, seq 1', () => {
    const ledger = new Ledger({ minter: 'hub', epoch: 5 })
    ledger.integrate({ node: node('a'), endpoints: [], history: [] }) // hub:5:1
    ledger.merge([{ type: 'node-joined', epoch: 5, seq: 9, uid: 'other:5:9', node: node('b') }])
    expect(ledger.epoch).toBe(6)
    expect(ledger.nodeLeft('a', 'closed')).toMatchObject({ epoch: 6, seq: 1, uid: 'hub:6:1' })
    expect(uids(ledger.history.events())).toEqual(['hub:5:1', 'other:5:9', 'hub:6:1'])
  })
})

describe('Ledger: idempotence', () => {
  it('re-merging its own history, or integrating the same hello twice, changes nothing', () => {
    fc.assert(
      fc.property(fc.gen(), (g) => {
        const ledger = new Ledger({ minter: 'hub', epoch: 3 })
        drive(ledger, g(fc.array, opArb, { maxLength: 30 }), { prefix: 'n', next: 0 })
        const before = ledger.history.events()
        const epoch = ledger.epoch
        expect(ledger.merge(before)).toEqual([])
        expect(ledger.history.events()).toEqual(before)
        expect(ledger.epoch).toBe(epoch)

        // A hello from an up node (or a fresh one) with some of its endpoints and a subset of
        // the history.
        const up = ledger.history.upNodes()
        const id = up.length > 0 && g(fc.boolean) ? g(fc.constantFrom, ...up) : 'fresh'
        const info = ledger.history.nodeInfo(id) ?? node(id)
        const mine = ledger.history.upEndpoints(id).map((endpointId) => ledger.history.endpointInfo(endpointId)!)
        const hello: Hello = {
          node: info,
          endpoints: [...g(fc.subarray, mine), ...(g(fc.boolean) ? [endpoint(id, 'brand-new')] : [])],
          history: g(fc.subarray, before),
        }
        const first = ledger.integrate(hello)
        expect(first.accepted).toBe(true)
        const afterFirst = ledger.history.events()
        const second = ledger.integrate(hello)
        expect(second).toEqual({ accepted: true, events: [] })
        expect(ledger.history.events()).toEqual(afterFirst)
      }),
      { numRuns: 200 },
    )
  })
})

describe('Ledger.integrate', () => {
  it('rejects a hello whose node has a node-left, in the hub history or in the hello', () => {
    const ledger = new Ledger({ minter: 'hub', epoch: 1 })
    ledger.integrate({ node: node('a'), endpoints: [endpoint('a', '1')], history: [] })
    ledger.nodeLeft('a', 'lost')
    const size = ledger.history.size
    expect(ledger.integrate({ node: node('a'), endpoints: [endpoint('a', '1')], history: [] })).toEqual({
      accepted: false,
      events: [],
    })
    expect(ledger.history.size).toBe(size)

    // The node-left comes with the hello itself (another hub declared it gone).
    const other = new Ledger({ minter: 'hub2', epoch: 9 })
    const history = ledger.history.events()
    const result = other.integrate({ node: node('a'), endpoints: [endpoint('a', '1')], history })
    expect(result.accepted).toBe(false)
    // What the hello brought is still merged (and broadcast), nothing is minted.
    expect(result.events).toEqual(history)
    expect(other.history.events()).toEqual(history)
  })

  it('rejects a hello from a forgotten (tombstoned) node', () => {
    const ledger = new Ledger({ minter: 'hub', epoch: 1, tail: 0 })
    ledger.integrate({ node: node('a'), endpoints: [], history: [] })
    ledger.nodeLeft('a', 'closed')
    expect(ledger.compact()).toEqual({ nodes: ['a'], endpoints: [] })
    expect(ledger.history.size).toBe(0)
    expect(ledger.integrate({ node: node('a'), endpoints: [], history: [] }).accepted).toBe(false)
    expect(ledger.history.size).toBe(0)
  })

  it('makes the history match the node own endpoint list (authoritative)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom('up', 'removed', 'none'), { minLength: 1, maxLength: 8 }),
        fc.array(fc.boolean(), { minLength: 8, maxLength: 8 }),
        fc.nat({ max: 3 }),
        fc.boolean(),
        (states, held, brandNew, ownHistory) => {
          const ledger = new Ledger({ minter: 'hub', epoch: 1 })
          ledger.integrate({ node: node('n'), endpoints: [], history: [] })
          const infos = states.map((_, i) => endpoint('n', `e${i}`))
          states.forEach((state, i) => {
            if (state === 'none') return
            ledger.addEndpoint(infos[i]!)
            if (state === 'removed') ledger.removeEndpoint('n', infos[i]!.id)
          })
          const holds = infos.filter((_, i) => held[i])
          const extra = Array.from({ length: brandNew }, (_, i) => endpoint('n', `new${i}`))
          const before = ledger.history.events()
          const result = ledger.integrate({
            node: node('n'),
            endpoints: [...holds, ...extra],
            history: ownHistory ? before : [],
          })
          expect(result.accepted).toBe(true)
          // Removed endpoints never come back (ids are never reused); the rest is as held.
          const expected = [...holds.filter((info) => states[infos.indexOf(info)] !== 'removed'), ...extra]
          expect(ledger.history.upEndpoints('n').sort()).toEqual(expected.map((info) => info.id).sort())
          // Exactly the difference was minted: added for held-but-not-up, removed for up-but-not-held.
          const added = result.events.filter((event) => event.type === 'endpoint-added').map((event) => eventEndpoint(event))
          const removed = result.events.filter((event) => event.type === 'endpoint-removed').map((event) => eventEndpoint(event))
          expect(added.sort()).toEqual(
            [...holds.filter((info) => states[infos.indexOf(info)] === 'none'), ...extra].map((info) => info.id).sort(),
          )
          expect(removed.sort()).toEqual(
            infos.filter((_, i) => states[i] === 'up' && !held[i]).map((info) => info.id).sort(),
          )
          expect(result.events.every((event) => minterOf(event) === 'hub')).toBe(true)
          expect(result.events.some((event) => event.type === 'node-joined' || event.type === 'node-left')).toBe(false)
        },
      ),
      { numRuns: 200 },
    )
  })

  it('mints node-joined with the hello NodeInfo only when the node is not up', () => {
    const ledger = new Ledger({ minter: 'hub', epoch: 1 })
    const first = ledger.integrate({ node: node('a', { name: 'first' }), endpoints: [], history: [] })
    expect(first.events.map((event) => event.type)).toEqual(['node-joined'])
    const again = ledger.integrate({ node: node('a', { name: 'second' }), endpoints: [], history: [] })
    expect(again.events).toEqual([])
    expect(ledger.history.nodeInfo('a')?.name).toBe('first')
  })

  it('returns what the hello brought first (in order), then what it minted', () => {
    const old = new Ledger({ minter: 'old', epoch: 1 })
    old.integrate({ node: node('b'), endpoints: [endpoint('b', '1')], history: [] })
    old.integrate({ node: node('a'), endpoints: [], history: [] })
    const ledger = new Ledger({ minter: 'hub', epoch: 2 })
    const events = old.history.events()
    const result = ledger.integrate({ node: node('a'), endpoints: [endpoint('a', 'x')], history: [...events].reverse() })
    expect(uids(result.events)).toEqual(['old:1:1', 'old:1:2', 'old:1:3', 'hub:2:1'])
    expect(result.events.at(-1)).toMatchObject({ type: 'endpoint-added', endpoint: { id: 'a/x' } })
  })

  it('addEndpoint / removeEndpoint / nodeLeft mint only real transitions', () => {
    const ledger = new Ledger({ minter: 'hub', epoch: 1 })
    expect(ledger.addEndpoint(endpoint('a', '1'))).toBeUndefined() // node not up
    ledger.integrate({ node: node('a'), endpoints: [], history: [] })
    ledger.integrate({ node: node('b'), endpoints: [], history: [] })
    expect(ledger.addEndpoint(endpoint('a', '1'))).toMatchObject({ type: 'endpoint-added' })
    expect(ledger.addEndpoint(endpoint('a', '1'))).toBeUndefined() // already up
    expect(ledger.removeEndpoint('b', 'a/1')).toBeUndefined() // not the owner
    expect(ledger.removeEndpoint('a', 'a/2')).toBeUndefined() // unknown
    expect(ledger.removeEndpoint('a', 'a/1')).toMatchObject({ type: 'endpoint-removed', node: 'a' })
    expect(ledger.removeEndpoint('a', 'a/1')).toBeUndefined() // already down
    expect(ledger.addEndpoint(endpoint('a', '1'))).toBeUndefined() // ids are never reused
    expect(ledger.nodeLeft('a', 'exited')).toMatchObject({ type: 'node-left', reason: 'exited' })
    expect(ledger.nodeLeft('a', 'exited')).toBeUndefined()
    expect(ledger.nodeLeft('zzz', 'exited')).toBeUndefined()
    expect(ledger.addEndpoint(endpoint('a', '3'))).toBeUndefined() // node down
    expect(ledger.history.size).toBe(5)
  })

  // The endpoint list stays authoritative after the hello: if the node dropped an endpoint
  // while there was no hub and its own history never got that endpoint's endpoint-added (the
  // old hub died before sending it), another client's later hello brings the endpoint-added
  // back, and the hub removes it again at once.
  it('a node own endpoint list wins over another client history that arrives later', () => {
    const old = new Ledger({ minter: 'old', epoch: 1 })
    old.integrate({ node: node('x'), endpoints: [], history: [] })
    old.integrate({ node: node('y'), endpoints: [], history: [] })
    const xJoined = old.history.events()
    old.addEndpoint(endpoint('x', 'e')) // reached y, not x
    const hub = new Ledger({ minter: 'y', epoch: 2 })
    hub.integrate({ node: node('x'), endpoints: [], history: xJoined }) // x dropped x/e meanwhile
    hub.integrate({ node: node('y'), endpoints: [], history: old.history.events() })
    expect(hub.history.upEndpoints('x')).toEqual([])
  })
})

describe('Ledger: the design notes scenarios (PROTOCOL.md §8)', () => {
  // Old hub H at epoch 10 mints 10:1…10:9 about H, A and B.
  function oldHub(): Ledger {
    const h = new Ledger({ minter: 'H', epoch: 10 })
    h.integrate({ node: node('H'), endpoints: [], history: [] }) // 10:1
    h.integrate({ node: node('A'), endpoints: [], history: [] }) // 10:2
    h.integrate({ node: node('B'), endpoints: [], history: [] }) // 10:3
    h.addEndpoint(endpoint('A', '1')) // 10:4
    h.addEndpoint(endpoint('B', '1')) // 10:5
    h.addEndpoint(endpoint('A', '2')) // 10:6
    h.addEndpoint(endpoint('H', '1')) // 10:7
    h.removeEndpoint('A', 'A/1') // 10:8
    h.addEndpoint(endpoint('H', '2')) // 10:9
    expect(uids(h.history.events())).toEqual(Array.from({ length: 9 }, (_, i) => `H:10:${i + 1}`))
    return h
  }

  for (const order of [
    ['B', 'A'],
    ['A', 'B'],
  ]) {
    it(`a new hub that lacks history (hellos ${order.join(' then ')})`, () => {
      const h = oldHub()
      const full = h.history.events()
      const clients: Record<string, Client> = {
        A: { info: node('A'), endpoints: [endpoint('A', '2')], history: full },
        B: { info: node('B'), endpoints: [endpoint('B', '1')], history: full.slice(0, 5) },
      }
      // B wins with what it has: 10:1…10:5.
      const hub = new Ledger({ minter: 'B', epoch: 20, history: clients.B!.history })
      const run = failover(
        hub,
        order.map((id) => clients[id]!),
      )
      const final = hub.history.events()
      // The full old history, then H's node-left (died), minted by the new hub after it.
      expect(uids(final)).toEqual([...uids(full), 'B:20:1'])
      expect(final.at(-1)).toMatchObject({ type: 'node-left', node: 'H', reason: 'died', epoch: 20, seq: 1 })
      expect(run.minted.map((event) => event.uid)).toEqual(['B:20:1'])
      for (const session of run.sessions) {
        const { history, observer } = adopt(run, session)
        expect(history.events()).toEqual(final)
        if (session.client.info.id === 'A') {
          // A knew everything: it only sees H go.
          expect(observer.all.slice(-3)).toEqual([
            { type: 'endpoint-down', endpoint: endpoint('H', '1'), node: node('H'), reason: 'node-down' },
            { type: 'endpoint-down', endpoint: endpoint('H', '2'), node: node('H'), reason: 'node-down' },
            { type: 'node-down', node: node('H'), reason: 'died' },
          ])
          expect(observer.all.filter((change) => change.type === 'node-up').map((change) => change.type)).toHaveLength(3)
        }
      }
      expect(hub.history.state()).toEqual([
        { node: node('A'), endpoints: [endpoint('A', '2')] },
        { node: node('B'), endpoints: [endpoint('B', '1')] },
      ])
    })
  }

  it('a fresh client registering first', () => {
    fc.assert(
      fc.property(fc.gen(), (g) => {
        const h = oldHub()
        const full = h.history.events()
        // F (fresh, empty history) wins the race; the monotonic clock puts its epoch above H's.
        const epoch = g(fc.integer, { min: 11, max: 1_000_000 })
        const fresh: Client = { info: node('F'), endpoints: [endpoint('F', 'pub')], history: [] }
        // B re-asserts an endpoint whose endpoint-add the old hub never got to mint.
        const a: Client = { info: node('A'), endpoints: [endpoint('A', '2')], history: full }
        const b: Client = { info: node('B'), endpoints: [endpoint('B', '1'), endpoint('B', 'late')], history: full }
        const hub = new Ledger({ minter: 'F', epoch, history: [] })
        const run = failover(hub, [fresh, ...g(fc.shuffledSubarray, [a, b], { minLength: 2 })])
        const final = hub.history.events()
        // H's history in its original order, then F's join, then what the hub minted after.
        expect(final.slice(0, 9)).toEqual(full)
        expect(final[9]).toMatchObject({ type: 'node-joined', uid: `F:${epoch}:1`, node: node('F') })
        expect(final.slice(9)).toEqual(run.minted)
        expect(final.slice(10).map((event) => event.type).sort()).toEqual(['endpoint-added', 'endpoint-added', 'node-left'])
        expect(final.slice(10).find((event) => event.type === 'node-left')).toMatchObject({ node: 'H', reason: 'died' })
        expectInOrder(final)
        for (const session of run.sessions) {
          const { history, observer } = adopt(run, session)
          expect(history.events()).toEqual(final)
          const nodeUps = observer.all.filter((change) => change.type === 'node-up').map((change) => change.node.id)
          if (session.client.info.id === 'F') {
            // F reports every live node it learns.
            expect(nodeUps.sort()).toEqual(['A', 'B', 'F', 'H'])
            continue
          }
          // Old clients: F's node-up once; about the nodes they knew, only what really
          // happened (B's re-asserted endpoint, H's death), no duplicates.
          const afterFailover = observer.all.slice(observer.all.findIndex((change) => change.type === 'node-up' && change.node.id === 'F'))
          expect(afterFailover.filter((change) => change.type === 'node-up')).toEqual([{ type: 'node-up', node: node('F') }])
          expect(afterFailover.map((change) => `${change.type} ${'endpoint' in change ? change.endpoint.id : change.node.id}`).sort()).toEqual(
            ['endpoint-down H/1', 'endpoint-down H/2', 'endpoint-up B/late', 'endpoint-up F/pub', 'node-down H', 'node-up F'].sort(),
          )
        }
      }),
      { numRuns: 60 },
    )
  })
})

describe('Ledger: bounded history (compaction)', () => {
  it('10,000 join/leave cycles keep the history bounded and forgotten nodes out', () => {
    const tail = 20
    const ledger = new Ledger({ minter: 'hub', epoch: 1, tail })
    for (let k = 0; k < 3; k++) {
      ledger.integrate({ node: node(`live${k}`), endpoints: [endpoint(`live${k}`, 'p'), endpoint(`live${k}`, 's')], history: [] })
    }
    const alive = ledger.history.size
    const saved = new Map<string, TopologyEvent[]>()
    let worst = 0
    let worstDeparted = 0
    for (let i = 0; i < 10_000; i++) {
      const id = `c${i}`
      const joined = ledger.integrate({ node: node(id), endpoints: [], history: [] }).events
      const left = ledger.nodeLeft(id, i % 2 === 0 ? 'closed' : 'exited')!
      const forget = ledger.compact()
      if (forget) expect(ledger.history.departed()).toHaveLength(tail)
      if (i >= 9_000) saved.set(id, [...joined, left])
      worst = Math.max(worst, ledger.history.size)
      worstDeparted = Math.max(worstDeparted, ledger.history.departed().length)
    }
    expect(worstDeparted).toBeLessThanOrEqual(Math.floor(tail * 1.25))
    expect(worst).toBeLessThanOrEqual(alive + Math.floor(tail * 1.25) * 2)
    expect(ledger.history.upNodes()).toEqual(['live0', 'live1', 'live2'])
    // The recently forgotten nodes cannot come back, neither by merge nor by hello.
    const forgotten = [...saved.keys()].filter((id) => !ledger.history.hasLeft(id))
    expect(forgotten.length).toBeGreaterThan(900)
    const size = ledger.history.size
    for (const id of forgotten) {
      expect(ledger.merge(saved.get(id)!)).toEqual([])
      expect(ledger.integrate({ node: node(id), endpoints: [], history: saved.get(id)! }).accepted).toBe(false)
    }
    expect(ledger.history.size).toBe(size)
    // The ones still in the tail are whole: join and leave.
    for (const id of saved.keys()) {
      if (!forgotten.includes(id)) expect(ledger.history.nodeInfo(id)).toEqual(node(id))
    }
  })

  it('endpoint churn on a long-lived node stays bounded', () => {
    const tail = 10
    const ledger = new Ledger({ minter: 'hub', epoch: 1, tail })
    ledger.integrate({ node: node('n'), endpoints: [endpoint('n', 'keep')], history: [] })
    const alive = ledger.history.size
    let worst = 0
    const saved: TopologyEvent[] = []
    for (let i = 0; i < 10_000; i++) {
      const added = ledger.addEndpoint(endpoint('n', `e${i}`))!
      const removed = ledger.removeEndpoint('n', `n/e${i}`)!
      ledger.compact()
      if (i === 9_900) saved.push(added, removed)
      worst = Math.max(worst, ledger.history.size)
    }
    expect(worst).toBeLessThanOrEqual(alive + Math.floor(tail * 1.25) * 2)
    expect(ledger.history.upEndpoints('n')).toEqual(['n/keep'])
    expect(ledger.history.isEndpointRemoved('n/e9900')).toBe(false) // forgotten
    expect(ledger.merge(saved)).toEqual([])
    expect(ledger.addEndpoint(endpoint('n', 'e9900'))).toBeUndefined()
    // The node's hello listing a forgotten endpoint does not bring it back either.
    expect(ledger.integrate({ node: node('n'), endpoints: [endpoint('n', 'keep'), endpoint('n', 'e9900')], history: saved })).toEqual({
      accepted: true,
      events: [],
    })
  })

  it('compaction forgets the oldest departed entities whole, and a merge of anything ever minted brings none back', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 120 }), fc.integer({ min: 0, max: 6 }), (ops, tail) => {
        const ledger = new Ledger({ minter: 'hub', epoch: 1, tail })
        const ever: TopologyEvent[] = []
        const ids = { prefix: 'n', next: 0 }
        for (const op of ops) {
          const departedBefore = ledger.history.departed()
          ever.push(...drive(ledger, [op], ids))
          const departed = ledger.history.departed()
          const forget = ledger.compact()
          if (departed.length <= tail * 1.25) {
            expect(forget).toBeUndefined()
            continue
          }
          // The oldest ones, down to `tail`.
          const gone = departed.slice(0, departed.length - tail)
          expect(forget).toEqual({
            nodes: gone.filter((entry) => entry.kind === 'node').map((entry) => entry.id),
            endpoints: gone.filter((entry) => entry.kind === 'endpoint').map((entry) => entry.id),
          })
          expect(ledger.history.departed()).toEqual(departed.slice(departed.length - tail))
          // Whole: no event about a forgotten id is left.
          const dropped = new Set([...forget!.nodes, ...forget!.endpoints])
          for (const event of ledger.history.events()) {
            expect(dropped.has(eventNode(event))).toBe(false)
            expect(dropped.has(eventEndpoint(event) ?? '')).toBe(false)
          }
          expect(departedBefore.length).toBeLessThanOrEqual(Math.floor(tail * 1.25))
        }
        const before = ledger.history.events()
        // A stale client history (everything ever minted) adds nothing back.
        expect(ledger.merge(ever)).toEqual([])
        expect(ledger.history.events()).toEqual(before)
        // What is kept is exactly what was minted minus whole forgotten entities, in order.
        const kept = new Set(uids(before))
        expect(uids(ever.filter((event) => kept.has(event.uid)))).toEqual(uids(before))
      }),
      { numRuns: 200 },
    )
  })

  it('tombstones are bounded: the last max(1024, 16 × tail) forgotten ids are remembered', () => {
    const ledger = new Ledger({ minter: 'hub', epoch: 1, tail: 0 })
    const saved: TopologyEvent[][] = []
    for (let i = 0; i < 1100; i++) {
      const joined = ledger.integrate({ node: node(`c${i}`), endpoints: [], history: [] }).events
      saved.push([...joined, ledger.nodeLeft(`c${i}`, 'closed')!])
      ledger.compact()
    }
    expect(ledger.history.size).toBe(0)
    // The newest 1024 are refused; older ones may come back (as departed nodes: down).
    for (let i = 1100 - 1024; i < 1100; i++) expect(ledger.merge(saved[i]!)).toEqual([])
    expect(ledger.merge(saved[0]!)).toHaveLength(2)
    expect(ledger.history.isNodeUp('c0')).toBe(false)
  })
})
