// A small login page (username or phone + password, POST /api/auth/login). Production
// mini-programs would log in with wx.login / my.getAuthCode instead; see README "Clients".
var createApi = require('../api').createApi;
var errorText = require('../errors').errorText;

module.exports = function createLoginPage(platform, config) {
  var api = createApi(platform, config);
  return {
    data: { login: '', password: '', error: '', busy: false },
    onLoginInput: function (event) { this.setData({ login: event.detail.value }); },
    onPasswordInput: function (event) { this.setData({ password: event.detail.value }); },
    onSubmit: function () {
      var self = this;
      if (!this.data.login || !this.data.password) {
        this.setData({ error: '请输入用户名和密码' });
        return Promise.resolve();
      }
      this.setData({ busy: true, error: '' });
      return api.login(this.data.login.trim(), this.data.password).then(function (result) {
        self.setData({ busy: false });
        platform.toast('欢迎，' + result.user.nickname, 'ok');
        platform.navigateBack();
      }, function (err) {
        // A 401 on the login form is a wrong password, not "log in first".
        self.setData({ busy: false, error: errorText(err.status === 401 ? { code: 'wrong_password' } : err) });
      });
    },
  };
};
