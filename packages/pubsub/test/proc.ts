// What a process holds, read from /proc/self: shared by the fixture child and tests that
// look at their own process.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs'

export interface Counts {
  fds: number
  memfdFds: number
  memfdMaps: number
  devShm: number
  // By kind, from the memfd names the package gives (Segment.create's `name`) and the
  // eventfd inode: what the pool transport holds is told apart from per-message segments.
  /** Segment transport payloads (`memfd:ipc-pubsub`): one per message held or in flight. */
  segmentFds: number
  segmentMaps: number
  /** Publisher pools (`memfd:ipc-pubsub-pool`): the own pool, and the pools of publishers we map. */
  poolFds: number
  poolMaps: number
  /** Pool links' rings (`memfd:ipc-pubsub-ring`): one per pool link, at either end. */
  ringFds: number
  ringMaps: number
  /** eventfds (the pool links' doorbells: two per link, at either end). */
  eventFds: number
}

// The name a memfd was created with, from a /proc fd link or maps path: `/memfd:<name> (deleted)`.
function memfdName(path: string): string | undefined {
  const start = path.indexOf('/memfd:')
  if (start < 0) return undefined
  const name = path.slice(start + '/memfd:'.length)
  return name.endsWith(' (deleted)') ? name.slice(0, -' (deleted)'.length) : name
}

const KINDS = { 'ipc-pubsub': 'segment', 'ipc-pubsub-pool': 'pool', 'ipc-pubsub-ring': 'ring' } as const

/** What each open fd is (its /proc/self/fd link, inode numbers blanked), sorted: for failure messages. */
export function fdTargets(): string[] {
  const targets: string[] = []
  for (const name of readdirSync('/proc/self/fd')) {
    try {
      targets.push(readlinkSync(`/proc/self/fd/${name}`).replace(/\[\d+\]$/, '[N]'))
    } catch {
      // The directory fd readdir used, closed by now.
    }
  }
  return targets.sort()
}

/** Open fds, memfd fds, memfd mappings, and entries in /dev/shm; memfds and eventfds by kind. */
export function counts(): Counts {
  const result: Counts = {
    fds: 0,
    memfdFds: 0,
    memfdMaps: 0,
    devShm: readdirSync('/dev/shm').length,
    segmentFds: 0,
    segmentMaps: 0,
    poolFds: 0,
    poolMaps: 0,
    ringFds: 0,
    ringMaps: 0,
    eventFds: 0,
  }
  for (const name of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(`/proc/self/fd/${name}`)
      result.fds++
      if (target === 'anon_inode:[eventfd]') result.eventFds++
      const memfd = memfdName(target)
      if (memfd === undefined) continue
      result.memfdFds++
      const kind = KINDS[memfd as keyof typeof KINDS]
      if (kind !== undefined) result[`${kind}Fds`]++
    } catch {
      // The directory fd readdir used, closed by now.
    }
  }
  for (const line of readFileSync('/proc/self/maps', 'utf8').split('\n')) {
    const memfd = memfdName(line)
    if (memfd === undefined) continue
    result.memfdMaps++
    const kind = KINDS[memfd as keyof typeof KINDS]
    if (kind !== undefined) result[`${kind}Maps`]++
  }
  return result
}
