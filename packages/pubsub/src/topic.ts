// The topic grammar (docs/PROTOCOL.md 9.1, README "Topics"). A topic is a name users type,
// log and match on, and travels in topology JSON: it must print as what it is.
import { PubSubError } from './errors.js'

/** Largest topic, in bytes of UTF-8. */
export const TOPIC_MAX_BYTES = 1024

// Unicode Cc: C0 controls, DEL and C1 controls.
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is its job
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/u
// In a /u regex a well-formed pair is one code point: \p{Cs} matches only lone surrogates.
const LONE_SURROGATE = /\p{Cs}/u
const EDGE_SPACE = /^\s|\s$/u

/**
 * Why `topic` is not a valid topic, or undefined if it is. Valid: a string of 1-1024 bytes
 * of UTF-8 (well-formed: no lone surrogates), no control character (U+0000-U+001F,
 * U+007F-U+009F), made of levels separated by '/', each level non-empty, without leading or
 * trailing whitespace, and not exactly '*' or '**' (reserved for wildcards).
 */
export function topicProblem(topic: unknown): string | undefined {
  if (typeof topic !== 'string') return 'must be a string'
  if (topic.length === 0) return 'must not be empty'
  if (LONE_SURROGATE.test(topic)) return 'must be well-formed UTF-16 (no lone surrogates)'
  if (Buffer.byteLength(topic, 'utf8') > TOPIC_MAX_BYTES) return `must be at most ${TOPIC_MAX_BYTES} bytes of UTF-8`
  if (CONTROL.test(topic)) return 'must not contain control characters'
  for (const level of topic.split('/')) {
    if (level.length === 0) return "must not have an empty level (a leading, trailing or double '/')"
    if (EDGE_SPACE.test(level)) return 'must not have whitespace at the start or end of a level'
    if (level === '*' || level === '**') return "must not have a level '*' or '**' (reserved for wildcards)"
  }
  return undefined
}

/** @internal Checks a topic argument: ERR_PUBSUB_INVALID_ARGUMENT if it breaks the grammar. */
export function checkTopic(topic: unknown): string {
  const problem = topicProblem(topic)
  if (problem !== undefined) {
    const shown = typeof topic === 'string' ? JSON.stringify(topic.length > 80 ? `${topic.slice(0, 80)}…` : topic) : typeof topic
    throw new PubSubError('ERR_PUBSUB_INVALID_ARGUMENT', `topic ${shown} ${problem}`)
  }
  return topic as string
}
