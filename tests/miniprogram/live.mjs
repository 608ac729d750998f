// A running queqiao (accounts mode, --seed-demo) with the demo room on air: headless
// Chromium publishes its fake camera as the host by WHIP (H.264), so the bridge serves
// HTTP-FLV and HLS for the mini-program players. Reuses tests/browser/harness.mjs (its
// dependencies are installed by `npm ci` in tests/browser, which tests/run.sh does first).
import { startAccountsServer, launchBrowser, login, register, topUp, apiCall, publishFromPage } from '../browser/harness.mjs';
import { waitFor } from './env.mjs';

export async function startLiveRoom() {
  const server = await startAccountsServer();
  let browser;
  try {
    const host = await login(server.base, server.accounts.host.login, server.accounts.host.password);
    const admin = await login(server.base, server.accounts.admin.login, server.accounts.admin.password);
    // A second room that stays offline, so the list has both kinds.
    const offline = await apiCall(server.base, 'POST', '/api/rooms', { title: '周五读书交友会', city: '北京', tags: ['读书'] }, admin.token);
    browser = await launchBrowser();
    const page = await browser.newPage();
    await publishFromPage(page, server.base, 'demo', host.token);
    const stream = await waitFor(async () => {
      const s = await apiCall(server.base, 'GET', '/api/rooms/demo/stream');
      return s.live && s.flv && s.hls ? s : null;
    }, { timeout: 45000, message: 'the bridge serves the demo room' });
    return {
      base: server.base,
      room: 'demo',
      offlineRoom: offline.id,
      stream,
      host,
      admin,
      register: (username, nickname) => register(server.base, username, nickname),
      topUp: (userId, amount) => topUp(server.base, admin.token, userId, amount),
      api: (method, path, body, token) => apiCall(server.base, method, path, body, token),
      async stop() {
        await browser.close();
        return server.stop();
      },
    };
  } catch (err) {
    if (browser) await browser.close();
    await server.stop();
    throw err;
  }
}
