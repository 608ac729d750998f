// Copies the shared room protocol files from web-demo/shared/ (served to browsers) into the
// mini-program's core/ (mini-programs cannot load files from outside their folder), and
// each page's .wxss to its Alipay .acss. core.test.mjs fails when the copies drift.
import { copyFileSync, readdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'web-demo');
export const SHARED = ['room-protocol.js', 'room-socket.js'];
const mp = join(root, 'miniprogram');

export function styleSheets() {
  const pages = readdirSync(join(mp, 'pages')).map((p) => join(mp, 'pages', p, p));
  return [join(mp, 'app'), ...pages].map((base) => [`${base}.wxss`, `${base}.acss`]);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const file of SHARED) {
    copyFileSync(join(root, 'shared', file), join(mp, 'core', file));
    console.log(`web-demo/shared/${file} → web-demo/miniprogram/core/${file}`);
  }
  for (const [wxss, acss] of styleSheets()) copyFileSync(wxss, acss);
  console.log('page .wxss → .acss');
}
