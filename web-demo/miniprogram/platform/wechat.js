/* global wx, Component */
// The WeChat layer: wx.* behind the platform interface the core uses, and pages built with
// the Component constructor (page lifecycle methods live in `methods`), which is also what
// miniprogram-simulate loads in the tests.

function request(options) {
  return new Promise(function (resolve, reject) {
    wx.request({
      url: options.url,
      method: options.method || 'GET',
      data: options.data,
      header: options.header,
      dataType: 'json',
      success: function (res) { resolve({ statusCode: res.statusCode, data: res.data }); },
      fail: reject,
    });
  });
}

/** wx.connectSocket as the shared room socket's transport. */
function openSocket(url, handlers) {
  var task = wx.connectSocket({ url: url, fail: function (err) { handlers.error(err); } });
  task.onOpen(function () { handlers.open(); });
  task.onMessage(function (res) { if (typeof res.data === 'string') handlers.message(res.data); });
  task.onClose(function (res) { handlers.close(res && res.code, res && res.reason); });
  task.onError(function (err) { handlers.error(err); });
  return {
    send: function (text) { task.send({ data: text }); },
    close: function () { task.close({}); },
  };
}

function definePage(definition) {
  var methods = {};
  for (var key in definition) {
    if (key !== 'data' && typeof definition[key] === 'function') methods[key] = definition[key];
  }
  Component({ data: definition.data || {}, methods: methods });
}

/** Whether the mini-program runs on iOS (getDeviceInfo where there is one). */
function isIos() {
  try {
    var info = typeof wx.getDeviceInfo === 'function' ? wx.getDeviceInfo() : wx.getSystemInfoSync();
    return /ios/i.test(String((info && (info.platform || info.system)) || ''));
  } catch (e) {
    return false;
  }
}

module.exports = {
  name: 'wechat',
  request: request,
  openSocket: openSocket,
  getStorage: function (key) {
    try { return wx.getStorageSync(key) || null; } catch (e) { return null; }
  },
  setStorage: function (key, value) { wx.setStorageSync(key, value); },
  removeStorage: function (key) { wx.removeStorageSync(key); },
  stopPullDownRefresh: function () { wx.stopPullDownRefresh(); },
  navigateTo: function (url) { wx.navigateTo({ url: url }); },
  navigateBack: function () { wx.navigateBack({ delta: 1 }); },
  toast: function (text, kind) { wx.showToast({ title: text, icon: kind === 'ok' ? 'success' : 'none' }); },
  setTitle: function (text) { wx.setNavigationBarTitle({ title: text }); },
  /** <live-player> (HTTP-FLV) needs a permitted service category; config says whether we have it. */
  /** Virtual goods (coins) cannot be bought in a mini-program on iOS (Apple's rule, which
   *  WeChat enforces): there the recharge entries are hidden. */
  caps: function (config) {
    var canUse = typeof wx.canIUse !== 'function' || wx.canIUse('live-player');
    var canPush = typeof wx.createLivePusherContext === 'function' && (typeof wx.canIUse !== 'function' || wx.canIUse('live-pusher'));
    return { livePlayer: !!(config.livePlayer && canUse), recharge: !isIos(), pusher: canPush };
  },
  /** The page's <live-pusher> (one per page): start/stop/switchCamera… */
  createPusher: function () { return wx.createLivePusherContext(); },
  setClipboard: function (text) { wx.setClipboardData({ data: text }); },
  definePage: definePage,
};
