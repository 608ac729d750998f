// Stale-while-revalidate on platform storage: draw what we had at once, then refresh.
function read(platform, key) {
  var entry = platform.getStorage(key);
  return entry && typeof entry === 'object' && 'value' in entry ? entry : null;
}

function write(platform, key, value) {
  try {
    platform.setStorage(key, { at: Date.now(), value: value });
  } catch (e) {
    // Storage full (10 MB per mini-program): the page still works without the cache.
  }
}

module.exports = { read: read, write: write };
