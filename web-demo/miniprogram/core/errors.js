// The mini-programs' text for every server error: stable codes (and, for validation, the
// field) translated to Chinese, the same wording as the web demo — never the server's
// English message.

var CODES = {
  network: '网络错误，请检查连接',
  unauthorized: '请先登录',
  wrong_password: '用户名/手机号或密码错误',
  username_taken: '该用户名或手机号已被注册',
  not_found: '内容不存在',
  room_not_found: '直播间不存在或已关闭',
  rate_limited: '操作太频繁，请稍后再试',
  too_many_requests: '操作太频繁，请稍后再试',
  forbidden: '没有权限进行此操作',
  conflict: '操作与当前状态冲突，请刷新后再试',
  validation: '请检查填写的内容',
  bad_request: '请求无效',
  internal: '服务器出错了，请稍后再试',
  unavailable: '服务繁忙，请稍后再试',
  muted: '你已被禁言',
  blocked_word: '消息包含不允许的词语',
  insufficient_coins: '金币不足，请先充值',
  too_long: '消息太长了（最多 300 字）',
  invalid: '消息格式不正确',
  unknown_gift: '没有这个礼物',
};

var FIELDS = {
  username: '用户名需 3–32 位，以字母开头，只能包含字母、数字和 _ . -',
  password: '密码需 8–128 位',
  nickname: '昵称需 1–32 个字',
  phone: '手机号需为 6–20 位数字（可以 + 开头）',
  login: '请输入用户名或手机号',
};

/** The Chinese text of an error ({status, code, field}); `notFound` names a 404's code. */
function errorText(err, notFound) {
  if (!err) return '';
  if (err.code === 'validation' && err.field && FIELDS[err.field]) return FIELDS[err.field];
  var code = err.code === 'not_found' && notFound ? notFound : err.code;
  if (CODES[code]) return CODES[code];
  if (err.status === 404) return CODES.not_found;
  if (err.status >= 500) return CODES.internal;
  return '请求失败，请稍后再试';
}

module.exports = { errorText: errorText, CODES: CODES };
