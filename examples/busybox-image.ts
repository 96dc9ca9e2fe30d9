/**
 * Writes a small busybox image, built on the spot from Debian's busybox-static, as an OCI
 * image layout archive: `node dist/examples/busybox-image.js OUT.tar [NAME]`.
 * Used by the quick start; the same builder makes the test images.
 */

import { rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import { baseFiles, buildLayer, makeImage } from '../test/lib/images.js';

const [out, name = 'busybox:latest'] = process.argv.slice(2);
if (!out) {
  process.stderr.write('usage: node dist/examples/busybox-image.js OUT.tar [NAME]\n');
  process.exit(2);
}
const img = await makeImage(dirname(out), {
  name,
  layers: [buildLayer(await baseFiles())],
  config: { Env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['sh'] },
});
await rename(img.ociArchive, out);
process.stdout.write(`${out}: ${name} ${img.id}\n`);
