// The topic grammar: property tests of the checker against a reference written another way
// (code point by code point), plus the cases issue 12 reported.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { checkTopic, TOPIC_MAX_BYTES, topicProblem } from './topic.js'

const isControl = (cp: number) => cp <= 0x1f || (cp >= 0x7f && cp <= 0x9f)
// Unicode White_Space, the set /\s/u matches (ECMAScript WhiteSpace + LineTerminator).
const WHITESPACE = new Set([
  0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x20, 0xa0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007,
  0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000, 0xfeff,
])

/** The grammar, restated: true iff `topic` is valid. */
function reference(topic: string): boolean {
  const points: number[] = []
  for (let i = 0; i < topic.length; i++) {
    const unit = topic.charCodeAt(i)
    if (unit >= 0xd800 && unit <= 0xdbff) {
      const low = topic.charCodeAt(i + 1)
      if (!(low >= 0xdc00 && low <= 0xdfff)) return false
      points.push(0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00))
      i++
    } else if (unit >= 0xdc00 && unit <= 0xdfff) {
      return false
    } else {
      points.push(unit)
    }
  }
  const bytes = points.reduce((sum, cp) => sum + (cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4), 0)
  if (bytes < 1 || bytes > TOPIC_MAX_BYTES) return false
  if (points.some(isControl)) return false
  const levels: number[][] = [[]]
  for (const cp of points) {
    if (cp === 0x2f) levels.push([])
    else (levels.at(-1) as number[]).push(cp)
  }
  return levels.every((level) => {
    if (level.length === 0) return false
    if (WHITESPACE.has(level[0] as number) || WHITESPACE.has(level.at(-1) as number)) return false
    const text = String.fromCodePoint(...level)
    return text !== '*' && text !== '**'
  })
}

// Characters that exercise every rule: slashes, stars, spaces, controls, surrogate halves,
// multi-byte and astral characters.
const tricky = fc.constantFrom(
  'a',
  'Z',
  '9',
  '-',
  '.',
  '/',
  '*',
  ' ',
  '\t',
  '\n',
  '\u0000',
  '\u001f',
  '\u007f',
  '\u0085',
  '\u00a0',
  '\u2028',
  '\u3000',
  '\ufeff',
  'é',
  '猫',
  '🐱',
  '\ud83d',
  '\udc31',
)
const trickyTopic = fc.array(tricky, { maxLength: 12 }).map((chars) => chars.join(''))
const anyString = fc.string({ unit: 'binary', maxLength: 40 })

describe('topic grammar', () => {
  it('agrees with the reference on strings built from tricky characters', () => {
    fc.assert(
      fc.property(trickyTopic, (topic) => {
        expect(topicProblem(topic) === undefined, JSON.stringify(topic)).toBe(reference(topic))
      }),
      { numRuns: 20_000 },
    )
  })

  it('agrees with the reference on arbitrary strings (any code unit)', () => {
    fc.assert(
      fc.property(anyString, (topic) => {
        expect(topicProblem(topic) === undefined, JSON.stringify(topic)).toBe(reference(topic))
      }),
      { numRuns: 5_000 },
    )
  })

  it('accepts every join of valid levels within the byte limit, and nothing longer', () => {
    const level = fc
      .string({ unit: 'grapheme', minLength: 1, maxLength: 20 })
      .filter((text) => reference(text) && !text.includes('/'))
    fc.assert(
      fc.property(fc.array(level, { minLength: 1, maxLength: 8 }), (levels) => {
        const topic = levels.join('/')
        const fits = Buffer.byteLength(topic) <= TOPIC_MAX_BYTES
        expect(topicProblem(topic) === undefined).toBe(fits)
        if (fits) expect(checkTopic(topic)).toBe(topic)
      }),
    )
    expect(topicProblem('x'.repeat(TOPIC_MAX_BYTES))).toBeUndefined()
    expect(topicProblem('x'.repeat(TOPIC_MAX_BYTES + 1))).toBeDefined()
    // The limit is in bytes: 342 three-byte characters are 1,026 bytes.
    expect(topicProblem('猫'.repeat(341))).toBeUndefined()
    expect(topicProblem('猫'.repeat(342))).toBeDefined()
  })

  it('refuses the reported topics and the reserved wildcard levels with ERR_PUBSUB_INVALID_ARGUMENT', () => {
    for (const topic of [
      'a\u0000b',
      '   ',
      ' a',
      'a ',
      '\ud800',
      'a\udc00b',
      '/a',
      'a/',
      'a//b',
      '*',
      '**',
      'camera/*/frames',
      'sensors/**',
      'a/ b',
      '',
      123,
      null,
    ]) {
      expect(() => checkTopic(topic), JSON.stringify(topic)).toThrow(
        expect.objectContaining({ name: 'PubSubError', code: 'ERR_PUBSUB_INVALID_ARGUMENT' }),
      )
    }
    for (const topic of ['frames', 'camera/gray', 'a*b', 'camera/**x/y', 'héllo wörld', '猫/🐱', 'a b/c d']) {
      expect(checkTopic(topic)).toBe(topic)
    }
  })
})
