// Where the mini-program finds queqiao. Mini-programs only talk to HTTPS/WSS domains that
// are on the account's allow-list (WeChat: 开发管理 → 开发设置 → 服务器域名; Alipay:
// 开发设置 → 服务器域名白名单); see README.md, section "Clients".
module.exports = {
  // The server's public HTTPS origin (no trailing slash). `wss://` of the same host is
  // used for the room WebSocket.
  server: 'https://live.example.com',
  // WeChat only: whether this account's service category may use <live-player> (social
  // live streaming and a few others). Without it the room plays HLS in <video>.
  livePlayer: true,
};
