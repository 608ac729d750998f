// Small formatting helpers for the mini-program pages (Chinese UI).

/** 1234 → "1234", 12345 → "1.2万". */
function compactNumber(n) {
  n = Number(n) || 0;
  if (n >= 100000) return Math.round(n / 10000) + '万';
  if (n >= 10000) return (n / 10000).toFixed(1) + '万';
  return String(n);
}

/** Seconds → "m:ss" or "h:mm:ss". */
function duration(seconds) {
  var s = Math.max(0, Math.round(Number(seconds) || 0));
  var h = Math.floor(s / 3600);
  var m = Math.floor((s % 3600) / 60);
  var ss = ('0' + (s % 60)).slice(-2);
  return h ? h + ':' + ('0' + m).slice(-2) + ':' + ss : m + ':' + ss;
}

/** Unix ms → "11月24日 20:05". */
function dateTime(ms) {
  if (!ms) return '';
  var d = new Date(ms);
  return (d.getMonth() + 1) + '月' + d.getDate() + '日 ' + ('0' + d.getHours()).slice(-2) + ':' + ('0' + d.getMinutes()).slice(-2);
}

/** The first character of a name, for avatar placeholders. */
function initial(name) {
  var text = String(name || '?');
  var code = text.charCodeAt(0);
  return code >= 0xd800 && code <= 0xdbff ? text.slice(0, 2) : text.charAt(0);
}

module.exports = { compactNumber: compactNumber, duration: duration, dateTime: dateTime, initial: initial };
