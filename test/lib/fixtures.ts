import { join } from 'node:path';
import type { TestDaemon } from './harness.js';
import { BASE_CONFIG, baseFiles, buildLayer, buildTestImages, makeImage } from './images.js';

/**
 * Loads the test images into a daemon, built at test time from busybox-static:
 * busybox:test (the base), cow:test (adds/modifies/deletes files over it),
 * entry:test (exec-form ENTRYPOINT + CMD) and shellform:test (shell-form ENTRYPOINT).
 */
export async function loadTestImages(d: TestDaemon): Promise<void> {
  const dir = join(d.dir, 'images');
  const { base, cow } = await buildTestImages(dir);
  const baseLayer = buildLayer(await baseFiles());
  const entry = await makeImage(dir, {
    name: 'entry:test',
    layers: [baseLayer],
    config: { ...BASE_CONFIG, Entrypoint: ['echo', 'entry'], Cmd: ['default-cmd'] },
  });
  const shell = await makeImage(dir, {
    name: 'shellform:test',
    layers: [baseLayer],
    config: { ...BASE_CONFIG, Entrypoint: ['/bin/sh', '-c', 'echo shell form ran'], Cmd: ['ignored'] },
  });
  for (const archive of [base.ociArchive, cow.dockerArchive, entry.ociArchive, shell.dockerArchive]) {
    const r = await d.cli(['image', 'load', '-i', archive]);
    if (r.code !== 0) throw new Error(`image load ${archive}: ${r.stderr}`);
  }
  for (const [from, to] of [
    [base.name, 'busybox:test'],
    [cow.name, 'cow:test'],
  ]) {
    const r = await d.cli(['image', 'tag', from!, to!]);
    if (r.code !== 0) throw new Error(`image tag ${from} ${to}: ${r.stderr}`);
  }
}
