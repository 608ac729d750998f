// The recharge page (充值) of the mini-programs: the balance and the packages of
// GET /api/wallet/packages, paid through the server's payment provider
// (POST /api/me/recharges, one idempotency key per purchase, reused on a retry). With the
// WeChat Pay / Alipay adapters the server returns the payment parameters the platform's
// requestPayment needs (see README "Wallet"); the sandbox provider used in tests pays at once.
// Note: WeChat does not allow virtual-goods payment inside iOS mini-programs.
var createApi = require('../api').createApi;
var protocol = require('../room-protocol');
var session = require('../session');
var errorText = require('../errors').errorText;

function yuan(cents) {
  return (cents / 100).toFixed(cents % 100 ? 2 : 0);
}

module.exports = function createRechargePage(platform, config) {
  var api = createApi(platform, config);
  return {
    data: { balance: null, packages: [], chosen: 0, available: false, sandbox: false, error: '', busy: false, iosBlocked: false },

    onLoad: function () {
      var self = this;
      this.setData({ iosBlocked: platform.caps(config).recharge === false });
      this.pendingKey = null;
      if (!session.get(platform)) {
        platform.navigateTo('/pages/login/login');
        return Promise.resolve();
      }
      return Promise.all([api.packages(), api.wallet()]).then(function (results) {
        var offer = results[0];
        self.setData({
          balance: results[1].coins,
          packages: (offer.packages || []).map(function (p) { return { coins: p.coins, price: '¥' + yuan(p.price_cents) }; }),
          available: offer.provider !== 'none' && !self.data.iosBlocked,
          sandbox: offer.provider === 'sandbox',
        });
      }, function (err) {
        self.setData({ error: errorText(err) });
      });
    },

    onPick: function (event) {
      this.pendingKey = null;
      this.setData({ chosen: Number(event.currentTarget.dataset.coins) });
    },

    onPay: function () {
      var self = this;
      if (!this.data.chosen || !this.data.available || this.data.busy) return Promise.resolve();
      this.pendingKey = this.pendingKey || protocol.newId('r');
      this.setData({ busy: true, error: '' });
      return api.recharge(this.data.chosen, this.pendingKey).then(function (result) {
        self.pendingKey = null;
        self.setData({ busy: false, balance: result.wallet.coins });
        platform.toast('充值成功', 'ok');
      }, function (err) {
        self.setData({ busy: false, error: errorText(err) });
      });
    },

    onBack: function () {
      platform.navigateBack();
    },
  };
};
