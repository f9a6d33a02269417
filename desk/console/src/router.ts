import { createRouter, createWebHistory, type RouteRecordRaw } from 'vue-router'
import { NAV } from './nav'
import { loadLabels } from './labels'
import { loadMapConfig } from './mapconfig'
import { loadMe, session } from './session'

// Every page is its own chunk, fetched when opened.
const pages: Record<string, () => Promise<unknown>> = {
  '/': () => import('./views/Dashboard.vue'),
  '/volunteers': () => import('./views/Volunteers.vue'),
  '/clues': () => import('./views/Clues.vue'),
  '/tasks': () => import('./views/Tasks.vue'),
  '/feed': () => import('./views/Feed.vue'),
  '/broadcasts': () => import('./views/Broadcasts.vue'),
  '/participation': () => import('./views/Participation.vue'),
  '/admin': () => import('./views/Admin.vue'),
}

const routes: RouteRecordRaw[] = [
  { path: '/login', component: () => import('./views/Login.vue'), meta: { public: true } },
  { path: '/password', component: () => import('./views/Password.vue') },
  ...NAV.map((item) => ({
    path: item.path,
    component: pages[item.path] as () => Promise<never>,
    meta: { permission: item.permission, title: item.title },
  })),
  { path: '/:rest(.*)*', redirect: '/' },
]

export const router = createRouter({ history: createWebHistory('/desk/'), routes })

router.beforeEach(async (to) => {
  if (to.meta.public) return true
  if (!session.token) return { path: '/login', query: to.fullPath !== '/' ? { next: to.fullPath } : {} }
  if (!session.me) {
    try {
      await loadMe()
    } catch {
      return { path: '/login' }
    }
  }
  if (session.me?.must_change_password) return to.path === '/password' ? true : { path: '/password' }
  await Promise.all([loadLabels().catch(() => {}), loadMapConfig().catch(() => {})])
  const permission = to.meta.permission as string | null | undefined
  if (permission && !session.me?.permissions?.includes(permission)) return { path: '/' }
  return true
})
