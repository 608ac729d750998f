// Queqiao mini-program (WeChat and Alipay share this folder; see README.md "Clients").
App({
  onLaunch: function () {},
  globalData: {},
});
