import { describe, expect, it } from 'vitest'
import { beijing, beijingToday, metres } from './format'

describe('format', () => {
  it('shows UTC times in Beijing time to the minute', () => {
    expect(beijing('2026-11-30T17:05:59.123456+00:00')).toBe('2026-12-01 01:05')
    expect(beijing(null)).toBe('')
  })
  it('knows the Beijing date', () => {
    expect(beijingToday(new Date('2026-11-30T16:30:00Z'))).toBe('2026-12-01')
  })
  it('writes distances', () => {
    expect(metres(850)).toBe('850 米')
    expect(metres(2400)).toBe('2.4 公里')
  })
})
