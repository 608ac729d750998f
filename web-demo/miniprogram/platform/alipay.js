/* global my, Page */
// The Alipay layer: my.* behind the platform interface the core uses, pages with Page().
// Alipay's <video> plays HLS; there is no HTTP-FLV player, so rooms always use HLS.

function request(options) {
  return new Promise(function (resolve, reject) {
    my.request({
      url: options.url,
      method: options.method || 'GET',
      data: options.data,
      headers: options.header,
      dataType: 'json',
      success: function (res) { resolve({ statusCode: res.status || res.statusCode, data: res.data }); },
      fail: function (err) {
        // Alipay reports HTTP errors (4xx/5xx) through `fail` with the status and body.
        var status = err && (err.status || err.statusCode);
        if (status) resolve({ statusCode: status, data: err.data });
        else reject(err);
      },
    });
  });
}

/** my.connectSocket (multiple: true returns a SocketTask) as the room socket's transport. */
function openSocket(url, handlers) {
  var task = my.connectSocket({ url: url, multiple: true, fail: function (err) { handlers.error(err); } });
  if (!task || typeof task.onOpen !== 'function') throw new Error('this Alipay version has no SocketTask (base library 2.x needed)');
  task.onOpen(function () { handlers.open(); });
  task.onMessage(function (res) { if (res && typeof res.data === 'string') handlers.message(res.data); });
  task.onClose(function (res) { handlers.close(res && res.code, res && res.reason); });
  task.onError(function (err) { handlers.error(err); });
  return {
    send: function (text) { task.send({ data: text }); },
    close: function () { task.close({}); },
  };
}

/** Whether the mini-program runs on iOS. */
function isIos() {
  try {
    var info = my.getSystemInfoSync();
    return /ios/i.test(String((info && info.platform) || ''));
  } catch (e) {
    return false;
  }
}

module.exports = {
  name: 'alipay',
  request: request,
  openSocket: openSocket,
  getStorage: function (key) {
    try {
      var res = my.getStorageSync({ key: key });
      return (res && res.data) || null;
    } catch (e) { return null; }
  },
  setStorage: function (key, value) { my.setStorageSync({ key: key, data: value }); },
  removeStorage: function (key) { my.removeStorageSync({ key: key }); },
  stopPullDownRefresh: function () { my.stopPullDownRefresh(); },
  navigateTo: function (url) { my.navigateTo({ url: url }); },
  navigateBack: function () { my.navigateBack({ delta: 1 }); },
  toast: function (text, kind) { my.showToast({ content: text, type: kind === 'ok' ? 'success' : 'none' }); },
  setTitle: function (text) { my.setNavigationBar({ title: text }); },
  /** No <live-player>, no push component (hosts go live from the web studio); no
   *  virtual-goods purchase on iOS (Apple's rule). */
  caps: function () { return { livePlayer: false, recharge: !isIos(), pusher: false }; },
  createPusher: function () { return null; },
  setClipboard: function (text) { my.setClipboard({ text: text }); },
  /** The share panel (the page's onShareAppMessage says what is shared). */
  showSharePanel: function () { if (typeof my.showSharePanel === 'function') my.showSharePanel(); },
  definePage: function (definition) { Page(definition); },
};
