/* global my, wx */
// Picks the platform layer: Alipay when `my` is the runtime's API object, else WeChat.
var isAlipay = typeof my !== 'undefined' && my !== null && typeof my.request === 'function' && typeof wx === 'undefined';

module.exports = isAlipay ? require('./alipay') : require('./wechat');
