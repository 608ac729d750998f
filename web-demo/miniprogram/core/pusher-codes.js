// WeChat <live-pusher> codes (bindstatechange `detail.code`, binderror `detail.errCode`) in
// words, Chinese and English. `level`: 'info' (nothing to show), 'live' (pushing), 'warn'
// (the pusher retries by itself), 'error' (the push has stopped: the host starts again).
// Codes from WeChat's live-pusher documentation and Tencent's push SDK (same engine).

var CODES = {
  1001: { level: 'info', zh: '已连接推流服务器', en: 'Connected to the streaming server' },
  1002: { level: 'live', zh: '已与服务器握手，开始推流', en: 'Handshake done: streaming' },
  1003: { level: 'info', zh: '摄像头已打开', en: 'Camera opened' },
  1004: { level: 'info', zh: '录屏已启动', en: 'Screen capture started' },
  1005: { level: 'info', zh: '正在动态调整分辨率', en: 'Adjusting the resolution' },
  1006: { level: 'info', zh: '正在动态调整码率', en: 'Adjusting the bitrate' },
  1007: { level: 'info', zh: '首帧画面采集完成', en: 'First frame captured' },
  1008: { level: 'info', zh: '编码器已启动', en: 'Encoder started' },
  1101: { level: 'warn', zh: '网络状况不佳：上行带宽太小，观众可能看到卡顿', en: 'Poor network: the upload bandwidth is too low, viewers may see stalls' },
  1102: { level: 'warn', zh: '网络断开，正在自动重连…', en: 'Network lost: reconnecting…' },
  1103: { level: 'info', zh: '硬件编码启动失败，已改用软件编码', en: 'Hardware encoder failed: using the software encoder' },
  '-1301': { level: 'error', zh: '打开摄像头失败：请检查摄像头权限，或是否被其他应用占用', en: 'Could not open the camera: check the camera permission and whether another app is using it' },
  '-1302': { level: 'error', zh: '打开麦克风失败：请检查麦克风权限，或是否被其他应用占用', en: 'Could not open the microphone: check the microphone permission and whether another app is using it' },
  '-1303': { level: 'error', zh: '视频编码失败', en: 'Video encoding failed' },
  '-1304': { level: 'error', zh: '音频编码失败', en: 'Audio encoding failed' },
  '-1305': { level: 'error', zh: '不支持的视频分辨率', en: 'Unsupported video resolution' },
  '-1306': { level: 'error', zh: '不支持的音频采样率', en: 'Unsupported audio sample rate' },
  '-1307': { level: 'error', zh: '网络断开，推流失败：多次重连都没有成功，请检查网络后重新开播', en: 'Network disconnected, the push failed: reconnecting did not help; check the network and go live again' },
  3001: { level: 'warn', zh: '推流服务器域名解析失败，正在重试…', en: 'Could not resolve the streaming server, retrying…' },
  3002: { level: 'warn', zh: '连接推流服务器失败（1935 端口不通？），正在重试…', en: 'Could not connect to the streaming server (port 1935 blocked?), retrying…' },
  3003: { level: 'warn', zh: '与推流服务器握手失败，正在重试…', en: 'Handshake with the streaming server failed, retrying…' },
  3004: { level: 'error', zh: '推流服务器断开了连接：推流码可能已重置或失效，或直播间已有人在推流；请重新开播', en: 'The streaming server closed the connection: the stream key may have been reset, or someone else is live in this room; go live again' },
  3005: { level: 'warn', zh: '与推流服务器读写失败，正在重试…', en: 'Reading from / writing to the streaming server failed, retrying…' },
  5000: { level: 'error', zh: '小程序被挂起，推流已停止；回到小程序后请重新开播', en: 'The mini-program was suspended and the push stopped; come back and go live again' },
  5001: { level: 'error', zh: '推流被系统打断（来电或切到后台）；回到小程序后请重新开播', en: 'The system interrupted the push (a call, or the app went to the background); come back and go live again' },
  10001: { level: 'error', zh: '没有摄像头权限：请在设置中允许使用摄像头', en: 'No camera permission: allow the camera in the settings' },
  10002: { level: 'error', zh: '没有麦克风权限：请在设置中允许使用麦克风', en: 'No microphone permission: allow the microphone in the settings' },
};

/** The entry for a code ({level, zh, en}); unknown codes are 'info' unless negative. */
function describe(code) {
  var key = String(code);
  var known = CODES[key];
  if (known) return { code: Number(code), level: known.level, zh: known.zh, en: known.en };
  var n = Number(code);
  return {
    code: n,
    level: n < 0 ? 'error' : 'info',
    zh: n < 0 ? '推流出错（代码 ' + key + '）' : '推流状态 ' + key,
    en: n < 0 ? 'Push error (code ' + key + ')' : 'Push state ' + key,
  };
}

/** The words for a code in `lang` ('zh' by default, 'en'). */
function message(code, lang) {
  var entry = describe(code);
  return lang === 'en' ? entry.en : entry.zh;
}

module.exports = { CODES: CODES, describe: describe, message: message };
