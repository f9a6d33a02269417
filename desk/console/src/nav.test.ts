import { describe, expect, it } from 'vitest'
import { allowed } from './nav'

describe('navigation', () => {
  it('offers a leader only what a leader may open', () => {
    const leader = ['jurisdiction.read', 'volunteer.review', 'volunteer.locate', 'team.manage', 'report.view']
    expect(allowed(leader).map((n) => n.title)).toEqual(['工作台', '义警', '参与情况'])
  })
  it('offers an admin the admin page', () => {
    expect(allowed(['staff.manage']).map((n) => n.path)).toContain('/admin')
  })
})
