import { createApp } from 'vue'
import 'element-plus/theme-chalk/base.css'
import './style.css'
import App from './App.vue'
import { configureApi } from './api/client'
import { router } from './router'
import { forget, session } from './session'

configureApi({
  token: () => session.token,
  // A 401 anywhere (expired or revoked token) returns to the login page.
  onUnauthorized: () => {
    if (!session.token) return
    forget()
    void router.push({ path: '/login', query: { expired: '1' } })
  },
})

createApp(App).use(router).mount('#app')
