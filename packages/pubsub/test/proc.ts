// What a process holds, read from /proc/self: shared by the fixture child and tests that
// look at their own process.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs'

export interface Counts {
  fds: number
  memfdFds: number
  memfdMaps: number
  devShm: number
}

/** Open fds, memfd fds, memfd mappings, and entries in /dev/shm. */
export function counts(): Counts {
  let fds = 0
  let memfdFds = 0
  for (const name of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(`/proc/self/fd/${name}`)
      fds++
      if (target.startsWith('/memfd:')) memfdFds++
    } catch {
      // The directory fd readdir used, closed by now.
    }
  }
  const memfdMaps = readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((line) => line.includes('/memfd:')).length
  return { fds, memfdFds, memfdMaps, devShm: readdirSync('/dev/shm').length }
}
