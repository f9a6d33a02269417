import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'
import Components from 'unplugin-vue-components/vite'
import { ElementPlusResolver } from 'unplugin-vue-components/resolvers'

// Served by the Flask app at /desk/ (desk/console.py); nothing is loaded from elsewhere.
export default defineConfig({
  base: '/desk/',
  plugins: [
    vue(),
    // Element Plus components (and their CSS) are imported where a page uses them, so a page
    // ships its own code when it is opened.
    Components({ resolvers: [ElementPlusResolver({ importStyle: 'css' })], dts: false }),
  ],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    chunkSizeWarningLimit: 1200,
    reportCompressedSize: false,
  },
  test: {
    environment: 'happy-dom',
    include: ['src/**/*.test.ts'],
  },
})
