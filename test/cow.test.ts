import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { loadTestImages } from './lib/fixtures.js';
import { startTestDaemon } from './lib/harness.js';
import { COW } from './lib/images.js';

/** Every entry below dir with its type, mode, owner, device number and content hash. */
async function fingerprint(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string) => {
    for (const e of await fs.readdir(join(dir, rel), { withFileTypes: true })) {
      const p = join(rel, e.name);
      const st = await fs.lstat(join(dir, p));
      let what = `${st.mode.toString(8)} ${st.uid}:${st.gid} rdev=${st.rdev}`;
      if (e.isFile())
        what += ` ${createHash('sha256')
          .update(await fs.readFile(join(dir, p)))
          .digest('hex')}`;
      if (e.isSymbolicLink()) what += ` -> ${await fs.readlink(join(dir, p))}`;
      out[p] = what;
      if (e.isDirectory()) await walk(p);
    }
  };
  await walk('');
  return out;
}

t.test('copy-on-write: the container layer takes every change; image layers never change', async (t) => {
  const d = await startTestDaemon(t);
  await loadTestImages(d);
  const layersDir = join(d.dataRoot, 'images', 'layers');
  const before = await fingerprint(layersDir);
  t.ok(Object.keys(before).length > 100, 'the image layers are on disk');

  const script = [
    `cat ${COW.kept.path}`, // read: from the base layer
    `cat ${COW.modified.path}`, // read: the cow layer's version
    `echo "changed in the container" > ${COW.modified.path}`, // modify: copied up
    `rm ${COW.kept.path} ${COW.added.path}`, // delete: a base-layer file and a cow-layer file
    'echo "new in the container" > /srv/new-in-container.txt', // add
    `test -e ${COW.deleted.path} && echo "whiteout broken" || echo "image whiteout hides the file"`,
    `ls ${COW.opaque.dir}`,
  ].join('; ');
  const r = await d.cli(['container', 'run', '--name', 'writer', 'cow:test', 'sh', '-c', script]);
  t.equal(r.code, 0, r.stderr);
  t.equal(
    r.stdout,
    `${COW.kept.content}${COW.modified.after}image whiteout hides the file\nnew.txt\n`,
    'reads see the layers merged, the image whiteout and the opaque directory honoured',
  );

  const id = JSON.parse((await d.cli(['container', 'inspect', 'writer'])).stdout)[0].Id as string;
  const upper = join(d.dataRoot, 'containers', id, 'upper');
  t.equal(
    await fs.readFile(join(upper, 'srv', 'new-in-container.txt'), 'utf8'),
    'new in the container\n',
    'add: the new file is in the container layer',
  );
  t.equal(
    await fs.readFile(join(upper, COW.modified.path), 'utf8'),
    'changed in the container\n',
    'modify: copied up into the container layer',
  );
  for (const p of [COW.kept.path, COW.added.path]) {
    const st = await fs.lstat(join(upper, p));
    t.ok(st.isCharacterDevice() && st.rdev === 0, `delete: ${p} is a whiteout in the container layer`);
  }
  t.notOk(
    await fs.lstat(join(upper, 'bin')).catch(() => undefined),
    'read: nothing merely read is copied up',
  );

  const after = await fingerprint(layersDir);
  t.same(after, before, 'image layers are byte-for-byte unchanged');

  const fresh = await d.cli([
    'container',
    'run',
    '--rm',
    'cow:test',
    'sh',
    '-c',
    `cat ${COW.modified.path} ${COW.kept.path}; ls /srv`,
  ]);
  t.equal(
    fresh.stdout,
    `${COW.modified.after}${COW.kept.content}added.txt\nkeep.txt\nopaque\n`,
    "a second container sees the image, not the first one's changes",
  );

  await t.test('image save writes an OCI layout with a docker manifest', async (t) => {
    const out = join(d.dir, 'saved.tar');
    const s = await d.cli(['image', 'save', '-o', out, 'cow:test']);
    t.equal(s.code, 0, s.stderr);
    const names = execFileSync('tar', ['-tf', out], { encoding: 'utf8' }).split('\n');
    for (const f of ['oci-layout', 'index.json', 'manifest.json']) t.ok(names.includes(f), `has ${f}`);
    const rm = await d.cli(['image', 'rm', 'cow:test']);
    t.equal(rm.code, 0, rm.stderr);
    const load = await d.cli(['image', 'load', '-i', out]);
    t.equal(load.code, 0, load.stderr);
    t.match(load.stdout, /Loaded image: cow:test/);
    const again = await d.cli(['container', 'run', '--rm', 'cow:test', 'cat', COW.added.path]);
    t.equal(again.stdout, COW.added.content, 'the reloaded image runs');
  });

  await d.cli(['container', 'rm', 'writer']);
  t.same(await d.leftovers(), []);
});
