// The pages and the permission each needs: a page whose API would answer 403 is never offered.
export interface NavItem {
  path: string
  title: string
  permission: string | null
}

export const NAV: NavItem[] = [
  { path: '/', title: '工作台', permission: null },
  { path: '/volunteers', title: '义警', permission: 'volunteer.review' },
  { path: '/clues', title: '线索研判', permission: 'clue.triage' },
  { path: '/tasks', title: '巡逻任务', permission: 'task.manage' },
  { path: '/feed', title: '24小时警局', permission: 'feed.publish' },
  { path: '/broadcasts', title: '群发提醒', permission: 'notify.broadcast' },
  { path: '/participation', title: '参与情况', permission: 'report.view' },
  { path: '/admin', title: '管理', permission: 'staff.manage' },
]

export function allowed(permissions: readonly string[] | undefined): NavItem[] {
  return NAV.filter((item) => item.permission === null || (permissions ?? []).includes(item.permission))
}
