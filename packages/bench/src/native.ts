// The one file of @ipc-pubsub/bench that talks to libc through koffi: CPU pinning, the clock
// tick rate for /proc/<pid>/stat, and a trivial call whose cost is the cost of a koffi call.
import { readdirSync } from 'node:fs'
import koffi from 'koffi'

const libc = koffi.load('libc.so.6')

const _SC_CLK_TCK = 2 // sysconf(3): clock ticks per second, the unit of /proc/<pid>/stat times
const CPU_SET_BYTES = 128 // sizeof(cpu_set_t) in glibc: 1024 CPUs

const getpidNative = libc.func('int getpid(void)')
const sysconf = libc.func('long sysconf(int name)')
const sched_setaffinity = libc.func('int sched_setaffinity(int pid, size_t cpusetsize, const uint8_t *mask)')

/** getpid(2) through koffi: the cheapest call there is, so its cost is koffi's own. */
export function getpid(): number {
  return getpidNative() as number
}

/** Clock ticks per second (USER_HZ), the unit of utime and stime in /proc/<pid>/stat. */
export function clockTicksPerSecond(): number {
  return Number(sysconf(_SC_CLK_TCK))
}

/**
 * Pins this process to one CPU: every thread it has now (sched_setaffinity works per thread,
 * and Node's platform and libuv threads already run), and so every thread and child it starts
 * later, which inherit the mask.
 */
export function pinToCpu(cpu: number): void {
  if (!Number.isInteger(cpu) || cpu < 0 || cpu >= CPU_SET_BYTES * 8) throw new RangeError(`cpu ${cpu} is out of range`)
  const mask = new Uint8Array(CPU_SET_BYTES)
  mask[cpu >> 3] = 1 << (cpu & 7)
  for (const tid of readdirSync('/proc/self/task')) {
    if ((sched_setaffinity(Number(tid), CPU_SET_BYTES, mask) as number) !== 0) {
      throw new Error(`sched_setaffinity(thread ${tid}, cpu ${cpu}) failed: errno ${koffi.errno()}`)
    }
  }
}
