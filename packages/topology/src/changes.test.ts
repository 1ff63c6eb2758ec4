// Property tests of ChangeTracker: each node/endpoint id is reported up at most once and down
// at most once, in the order of docs/PROTOCOL.md §7, whatever sequence of history updates a
// client goes through (welcome replacing, events merging, forget lists, hub failover).
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ChangeTracker } from './changes.js'
import {
  type EndpointInfo,
  type Forget,
  History,
  LEAVE_REASONS,
  type LeaveReason,
  type NodeInfo,
  type TopologyEvent,
} from './history.js'
import { Ledger } from './ledger.js'
import { idOf, Observer } from '../test/observer.ts'

// ---- helpers (self-contained) ----

function node(id: string): NodeInfo {
  return { id, name: `name-${id}`, pid: 1000, startTime: null, pidNamespace: null, endpoint: null, metadata: {} }
}

function endpoint(nodeId: string, suffix: string): EndpointInfo {
  return { id: `${nodeId}/${suffix}`, node: nodeId, topic: `topic-${suffix}`, role: 'subscriber', options: {} }
}

type Op =
  | { readonly kind: 'join'; readonly endpoints: number }
  | { readonly kind: 'add'; readonly pick: number }
  | { readonly kind: 'remove'; readonly pick: number }
  | { readonly kind: 'leave'; readonly pick: number; readonly reason: LeaveReason }

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('join' as const), endpoints: fc.nat({ max: 2 }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('add' as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('remove' as const), pick: fc.nat() }) },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('leave' as const), pick: fc.nat(), reason: fc.constantFrom(...LEAVE_REASONS) }),
  },
)

/** One hub step: what it minted (one broadcast) and the forget list its compaction sent. */
interface Step {
  readonly minted: TopologyEvent[]
  readonly forget: Forget | undefined
  /** The hub's whole history after the step (what a welcome would carry). */
  readonly snapshot: TopologyEvent[]
}

/** A hub's life: ops applied as the hub does (integrate for joins, compact after departures). */
function hubTimeline(ops: readonly Op[], tail: number): Step[] {
  const ledger = new Ledger({ minter: 'hub', epoch: 1, tail })
  const steps: Step[] = [{ minted: [], forget: undefined, snapshot: [] }]
  let next = 0
  for (const op of ops) {
    const minted: TopologyEvent[] = []
    const up = ledger.history.upNodes()
    let departed = false
    switch (op.kind) {
      case 'join': {
        const id = `n${next++}`
        const endpoints = Array.from({ length: op.endpoints }, () => endpoint(id, `e${next++}`))
        minted.push(...ledger.integrate({ node: node(id), endpoints, history: [] }).events)
        break
      }
      case 'add': {
        if (up.length === 0) break
        const event = ledger.addEndpoint(endpoint(up[op.pick % up.length]!, `e${next++}`))
        if (event) minted.push(event)
        break
      }
      case 'remove': {
        const live = ledger.history.allUpEndpoints()
        if (live.length === 0) break
        const id = live[op.pick % live.length]!
        const event = ledger.removeEndpoint(ledger.history.endpointInfo(id)!.node, id)
        if (event) minted.push(event)
        departed = true
        break
      }
      case 'leave': {
        if (up.length === 0) break
        const event = ledger.nodeLeft(up[op.pick % up.length]!, op.reason)
        if (event) minted.push(event)
        departed = true
        break
      }
    }
    const forget = departed ? ledger.compact() : undefined
    steps.push({ minted, forget, snapshot: ledger.history.events() })
  }
  return steps
}

type ClientStep =
  /** A welcome: the hub's history at a later point replaces ours (superset, or compacted). */
  | { readonly kind: 'welcome'; readonly advance: number }
  /** Ordinary `events` messages: merge, then apply the forget list. */
  | { readonly kind: 'stream'; readonly advance: number }
  /** Merge part of a later hub history (a partial resend, a conflicting session). */
  | { readonly kind: 'subset'; readonly advance: number; readonly mask: readonly boolean[] }
  /** Replace with our own history plus part of a later hub history (a superset). */
  | { readonly kind: 'superset'; readonly advance: number; readonly mask: readonly boolean[] }
  /** Replay: merge our own history again, or re-apply a forget list already seen. */
  | { readonly kind: 'replay'; readonly pick: number }

const clientStepArb: fc.Arbitrary<ClientStep> = fc.oneof(
  fc.record({ kind: fc.constant('welcome' as const), advance: fc.nat({ max: 12 }) }),
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('stream' as const), advance: fc.integer({ min: 1, max: 6 }) }) },
  fc.record({ kind: fc.constant('subset' as const), advance: fc.nat({ max: 12 }), mask: fc.array(fc.boolean(), { maxLength: 64 }) }),
  fc.record({ kind: fc.constant('superset' as const), advance: fc.nat({ max: 12 }), mask: fc.array(fc.boolean(), { maxLength: 64 }) }),
  fc.record({ kind: fc.constant('replay' as const), pick: fc.nat() }),
)

function masked<T>(list: readonly T[], mask: readonly boolean[]): T[] {
  return list.filter((_, i) => mask[i % Math.max(1, mask.length)] ?? true)
}

// ---- tests ----

describe('ChangeTracker', () => {
  it('reports each id up at most once and down at most once, and always matches the history', () => {
    fc.assert(
      fc.property(
        fc.array(opArb, { minLength: 1, maxLength: 60 }),
        fc.integer({ min: 0, max: 5 }),
        fc.array(clientStepArb, { minLength: 1, maxLength: 25 }),
        (ops, tail, script) => {
          const steps = hubTimeline(ops, tail)
          const last = steps.length - 1
          const observer = new Observer()
          let history = new History()
          let at = 0
          const forgetsSeen: Forget[] = []
          for (const step of script) {
            switch (step.kind) {
              case 'welcome':
                at = Math.min(last, at + step.advance)
                history = new History(steps[at]!.snapshot)
                break
              case 'stream':
                for (let k = 0; k < step.advance && at < last; k++) {
                  at++
                  history.merge(steps[at]!.minted)
                  const forget = steps[at]!.forget
                  if (forget) {
                    history.forget(forget)
                    forgetsSeen.push(forget)
                  }
                }
                break
              case 'subset':
                at = Math.min(last, at + step.advance)
                history.merge(masked(steps[at]!.snapshot, step.mask))
                break
              case 'superset':
                at = Math.min(last, at + step.advance)
                history = new History([...history.events(), ...masked(steps[at]!.snapshot, step.mask)])
                break
              case 'replay': {
                const forget = forgetsSeen[step.pick % Math.max(1, forgetsSeen.length)]
                if (forget !== undefined && step.pick % 2 === 0) history.forget(forget)
                else history.merge(history.events())
                break
              }
            }
            observer.update(history)
            // A second update with nothing new reports nothing.
            expect(observer.update(history)).toEqual([])
          }
          // Catching up with the hub (a final welcome) converges on its state (Observer checks).
          observer.update(new History(steps[last]!.snapshot))
        },
      ),
      { numRuns: 300 },
    )
  })

  it('a client following the stream from the start reports every transition of the hub, exactly once', () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 80 }), fc.integer({ min: 0, max: 5 }), (ops, tail) => {
        const steps = hubTimeline(ops, tail)
        const observer = new Observer()
        const history = new History()
        const expected = new Map<string, ('up' | 'down')[]>()
        const note = (id: string, what: 'up' | 'down') => expected.set(id, [...(expected.get(id) ?? []), what])
        const truth = new History()
        for (const step of steps.slice(1)) {
          const beforeNodes = new Set(truth.upNodes())
          const beforeEndpoints = new Set(truth.allUpEndpoints())
          truth.merge(step.minted)
          for (const id of beforeEndpoints) if (!truth.isEndpointUp(id)) note(id, 'down')
          for (const id of beforeNodes) if (!truth.isNodeUp(id)) note(id, 'down')
          for (const id of truth.upNodes()) if (!beforeNodes.has(id)) note(id, 'up')
          for (const id of truth.allUpEndpoints()) if (!beforeEndpoints.has(id)) note(id, 'up')
          history.merge(step.minted)
          if (step.forget) history.forget(step.forget)
          observer.update(history)
        }
        // Compaction only forgets what is already down, so it never adds a report.
        expect(observer.reported).toEqual(expected)
      }),
      { numRuns: 200 },
    )
  })

  it('reports in the order endpoints down, nodes down, nodes up (join order), endpoints up (add order)', () => {
    const mk = (uid: number) => ({ epoch: 1, seq: uid, uid: `h:1:${uid}` })
    const a = node('a')
    const b = node('b')
    const c = node('c')
    const base: TopologyEvent[] = [
      { type: 'node-joined', ...mk(1), node: a },
      { type: 'node-joined', ...mk(2), node: b },
      { type: 'endpoint-added', ...mk(3), endpoint: endpoint('a', 'x') },
      { type: 'endpoint-added', ...mk(4), endpoint: endpoint('b', 'y') },
      { type: 'endpoint-added', ...mk(5), endpoint: endpoint('a', 'z') },
    ]
    const tracker = new ChangeTracker()
    const first = tracker.update(new History(base))
    expect(first.slice(0, 2)).toEqual([
      { type: 'node-up', node: a },
      { type: 'node-up', node: b },
    ])
    // Endpoint-ups after the node-ups, in add order (across nodes too: see the next test).
    expect(first.slice(2).filter((change) => change.type === 'endpoint-up' && change.node.id === 'a')).toEqual([
      { type: 'endpoint-up', endpoint: endpoint('a', 'x'), node: a },
      { type: 'endpoint-up', endpoint: endpoint('a', 'z'), node: a },
    ])
    expect(first.slice(2)).toContainEqual({ type: 'endpoint-up', endpoint: endpoint('b', 'y'), node: b })
    expect(first).toHaveLength(5)
    const next = new History(base)
    next.merge([
      { type: 'node-left', ...mk(6), node: 'a', reason: 'exited' },
      { type: 'endpoint-removed', ...mk(7), endpoint: 'b/y', node: 'b' },
      { type: 'node-joined', ...mk(8), node: c },
      { type: 'endpoint-added', ...mk(9), endpoint: endpoint('c', 'w') },
    ])
    expect(tracker.update(next)).toEqual([
      // (endpoint-downs in the order they were reported up)
      { type: 'endpoint-down', endpoint: endpoint('a', 'x'), node: a, reason: 'node-down' },
      { type: 'endpoint-down', endpoint: endpoint('b', 'y'), node: b, reason: 'removed' },
      { type: 'endpoint-down', endpoint: endpoint('a', 'z'), node: a, reason: 'node-down' },
      { type: 'node-down', node: a, reason: 'exited' },
      { type: 'node-up', node: c },
      { type: 'endpoint-up', endpoint: endpoint('c', 'w'), node: c },
    ])
    expect(tracker.nodes()).toEqual([b, c])
    expect(tracker.endpoints()).toEqual([endpoint('c', 'w')])
  })

  // PROTOCOL.md §7.4: endpoint-up comes in endpoint-added order, across nodes too.
  it('reports endpoint-ups in endpoint-added order across nodes', () => {
    const mk = (uid: number) => ({ epoch: 1, seq: uid, uid: `h:1:${uid}` })
    const history = new History([
      { type: 'node-joined', ...mk(1), node: node('a') },
      { type: 'node-joined', ...mk(2), node: node('b') },
      { type: 'endpoint-added', ...mk(3), endpoint: endpoint('a', 'x') },
      { type: 'endpoint-added', ...mk(4), endpoint: endpoint('b', 'y') },
      { type: 'endpoint-added', ...mk(5), endpoint: endpoint('a', 'z') },
    ])
    const ups = new ChangeTracker().update(history).filter((change) => change.type === 'endpoint-up').map(idOf)
    expect(ups).toEqual(['a/x', 'b/y', 'a/z'])
  })

  it('reports forgotten ids as down (reason "forgotten") and never brings them back', () => {
    const mk = (uid: number) => ({ epoch: 1, seq: uid, uid: `h:1:${uid}` })
    const a = node('a')
    const full = new History([
      { type: 'node-joined', ...mk(1), node: a },
      { type: 'endpoint-added', ...mk(2), endpoint: endpoint('a', 'x') },
      { type: 'node-joined', ...mk(3), node: node('b') },
    ])
    const tracker = new ChangeTracker()
    expect(tracker.update(full)).toHaveLength(3)
    // A new hub's history without a/x (and without b at all).
    const without = new History([{ type: 'node-joined', ...mk(1), node: a }])
    expect(tracker.update(without)).toEqual([
      { type: 'endpoint-down', endpoint: endpoint('a', 'x'), node: a, reason: 'forgotten' },
      { type: 'node-down', node: node('b'), reason: 'forgotten' },
    ])
    // Ids are never reused: seeing them again reports nothing (the history still has them).
    expect(tracker.update(full)).toEqual([])
    expect(tracker.nodes()).toEqual([a])
  })

  it('never reports an id that is already down when first learned', () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 60 }), (ops) => {
        const steps = hubTimeline(ops, 1000)
        const final = steps.at(-1)!.snapshot
        const tracker = new ChangeTracker()
        const changes = tracker.update(new History(final))
        const history = new History(final)
        expect(changes.every((change) => change.type === 'node-up' || change.type === 'endpoint-up')).toBe(true)
        expect(changes.filter((change) => change.type === 'node-up').map(idOf)).toEqual(history.upNodes())
        expect(changes.filter((change) => change.type === 'endpoint-up').map(idOf).sort()).toEqual(history.allUpEndpoints().sort())
      }),
      { numRuns: 100 },
    )
  })

  it('stays exact through thousands of departures (the reported-down set is pruned with the history)', () => {
    const ledger = new Ledger({ minter: 'hub', epoch: 1, tail: 10 })
    const observer = new Observer()
    const history = new History()
    ledger.integrate({ node: node('keep'), endpoints: [endpoint('keep', 'k')], history: [] })
    history.merge(ledger.history.events())
    observer.update(history)
    for (let i = 0; i < 3000; i++) {
      const id = `c${i}`
      history.merge(ledger.integrate({ node: node(id), endpoints: [endpoint(id, 'e')], history: [] }).events)
      observer.tracker.update(history) // up
      const left = ledger.nodeLeft(id, 'closed')!
      const forget = ledger.compact()
      history.merge([left])
      if (forget) history.forget(forget)
      const changes = observer.tracker.update(history)
      expect(changes.map((change) => change.type)).toEqual(['endpoint-down', 'node-down'])
    }
    // Full replays of the hub's history and of the client's own report nothing new.
    expect(observer.update(new History(ledger.history.events()))).toEqual([])
    expect(observer.update(history)).toEqual([])
    expect(observer.tracker.nodes().map((info) => info.id)).toEqual(['keep'])
    expect(observer.tracker.endpoints().map((info) => info.id)).toEqual(['keep/k'])
  })
})
