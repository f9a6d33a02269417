// Who is logged in: the token lives in this tab only (sessionStorage), the profile comes from
// /api/v1/desk/auth/me with the permissions that decide the navigation.
import { reactive } from 'vue'
import { api, ok, type Schemas } from './api/client'

export type Me = Schemas['DeskMe']
const KEY = 'yijing.desk.token'

export const session = reactive({
  token: sessionStorage.getItem(KEY) as string | null,
  me: null as Me | null,
})

export function can(permission: string): boolean {
  return !!session.me?.permissions?.includes(permission)
}

export async function login(username: string, password: string): Promise<void> {
  const issued = await ok(api.POST('/api/v1/desk/auth/login', { body: { username, password } }))
  session.token = issued.token ?? null
  if (session.token) sessionStorage.setItem(KEY, session.token)
  await loadMe()
}

export async function loadMe(): Promise<Me | null> {
  if (!session.token) return null
  session.me = await ok(api.GET('/api/v1/desk/auth/me'))
  return session.me
}

export function forget(): void {
  session.token = null
  session.me = null
  sessionStorage.removeItem(KEY)
}

export async function logout(): Promise<void> {
  try {
    await api.POST('/api/v1/desk/auth/logout')
  } finally {
    forget()
  }
}
