/**
 * The registry client against a real registry (Debian's docker-registry on loopback, plain and
 * with basic auth over TLS) and skopeo on the other side of each exchange: push then skopeo
 * copies out an OCI layout; skopeo pushes then tsswarm pulls and runs. Also: login, mounts and
 * skips on push, manifest lists with --platform, a corrupt blob refused, an interrupted pull
 * resumed (a relay in front of the registry cuts one blob short), and image prune.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { TaskRecord } from '../src/api/cluster.js';
import { freePort } from './lib/etcd.js';
import { CLI, startTestDaemon, type TestDaemon } from './lib/harness.js';
import { loadImagesOn } from './lib/hosts.js';
import { buildLayer, makeImage } from './lib/images.js';
import {
  registryAuthHeader,
  skopeo,
  skopeoDestArgs,
  skopeoSrcArgs,
  startRegistry,
  type TestRegistry,
} from './lib/registry.js';
import { cliJson, initSwarm } from './lib/swarm.js';
import { sleep, until } from './lib/wait.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function ok(
  d: TestDaemon,
  args: string[],
  opts: { input?: string; env?: Record<string, string> } = {},
) {
  const r = await d.cli(args, { timeoutMs: 120_000, ...opts });
  if (r.code !== 0) throw new Error(`tsswarm ${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

async function imageId(d: TestDaemon, ref: string): Promise<string> {
  return JSON.parse(await ok(d, ['image', 'inspect', ref]))[0].id;
}

async function runEcho(d: TestDaemon, ref: string, words: string): Promise<string> {
  return (await ok(d, ['container', 'run', '--rm', ref, 'echo', words])).trim();
}

/** Checks an OCI image layout directory the way the image-spec defines it. */
async function validateLayout(t: Tap | Test, dir: string): Promise<void> {
  const layout = JSON.parse(await fs.readFile(join(dir, 'oci-layout'), 'utf8'));
  t.equal(layout.imageLayoutVersion, '1.0.0', 'oci-layout version');
  const index = JSON.parse(await fs.readFile(join(dir, 'index.json'), 'utf8'));
  t.equal(index.schemaVersion, 2, 'index.json schemaVersion 2');
  const blobs = await fs.readdir(join(dir, 'blobs', 'sha256'));
  for (const b of blobs)
    t.equal(
      sha256(await fs.readFile(join(dir, 'blobs', 'sha256', b))),
      b,
      `blob ${b.slice(0, 12)} matches its name`,
    );
  const m = index.manifests[0];
  const manifest = JSON.parse(await fs.readFile(join(dir, 'blobs', 'sha256', m.digest.slice(7)), 'utf8'));
  for (const d of [manifest.config, ...manifest.layers])
    t.ok(blobs.includes(d.digest.slice(7)), `${d.digest.slice(7, 19)} present`);
}

type Tap = typeof t;

/** One daemon and two registries (plain; TLS with basic auth, its CA in the daemon's certs.d) for all. */
interface Env {
  d: TestDaemon;
  plain: TestRegistry;
  secure: TestRegistry;
}

async function setUp(t: Test): Promise<Env> {
  const plain = await startRegistry(t);
  const secure = await startRegistry(t, { tls: true, auth: true });
  const certs = join('/tmp', `${secure.dir.split('/').pop()}-certs`);
  t.teardown(() => fs.rm(certs, { recursive: true, force: true }));
  await fs.mkdir(join(certs, secure.host), { recursive: true });
  await fs.copyFile(secure.caFile!, join(certs, secure.host, 'ca.crt'));
  const d = await startTestDaemon(t, ['--registry-certs', certs]);
  await loadImagesOn(d);
  return { d, plain, secure };
}

const plainRegistry = (t: Test, { d, plain: reg }: Env) =>
  t.test('plain registry: push, skopeo copies out; skopeo pushes, tsswarm pulls and runs', async (t) => {
    const name = `${reg.host}/tsswarm/busybox:1`;
    await ok(d, ['image', 'tag', 'busybox:test', name]);
    const pushed = await ok(d, ['image', 'push', name]);
    t.match(pushed, /Pushed/, 'layers uploaded');
    t.match(pushed, /digest: sha256:[a-f0-9]{64}/, 'push prints the manifest digest');

    const out = join(d.dir, 'layout');
    await skopeo(reg, ['copy', ...skopeoSrcArgs(reg), `docker://${name}`, `oci:${out}:1`]);
    await validateLayout(t, out);

    // a second push finds everything there
    const again = await ok(d, ['image', 'push', name]);
    t.match(again, /Layer already exists/, 'existing blobs are skipped');
    t.notMatch(again, /Pushed/, 'nothing uploaded again');

    // another repository of the same registry: blobs are mounted, not uploaded
    const other = `${reg.host}/other/busybox:2`;
    await ok(d, ['image', 'tag', name, other]);
    const mounted = await ok(d, ['image', 'push', other]);
    t.match(mounted, /Mounted from tsswarm\/busybox/, 'blobs mounted from the first repository');

    // skopeo pushes an image tsswarm has never seen; tsswarm pulls and runs it
    const made = await makeImage(d.dir, {
      name: 'skopeo-made:1',
      layers: [
        buildLayer({
          '/bin': { dir: true },
          '/bin/busybox': { content: await fs.readFile('/bin/busybox'), mode: 0o755 },
          '/bin/sh': { symlink: 'busybox' },
          '/bin/echo': { symlink: 'busybox' },
          '/etc': { dir: true },
          '/etc/made-by': { content: 'skopeo\n' },
        }),
      ],
      config: { Env: ['PATH=/bin'], Cmd: ['cat', '/etc/made-by'] },
    });
    const fromSkopeo = `${reg.host}/skopeo/made:1`;
    await skopeo(reg, [
      'copy',
      ...skopeoDestArgs(reg),
      `oci-archive:${made.ociArchive}`,
      `docker://${fromSkopeo}`,
    ]);
    const pulled = await ok(d, ['image', 'pull', fromSkopeo]);
    t.match(pulled, /Pull complete/, 'layer pulled');
    t.match(pulled, /Digest: sha256:/, 'digest printed');
    t.equal(await runEcho(d, fromSkopeo, 'pulled image runs'), 'pulled image runs');
    t.equal(await imageId(d, fromSkopeo), made.id, 'same image ID as the one skopeo pushed');

    // pulled again: nothing to fetch
    const again2 = await ok(d, ['image', 'pull', fromSkopeo]);
    t.match(again2, /Already exists/, 'a layer the store has is not fetched');

    // by digest
    const digest = /Digest: (sha256:[a-f0-9]{64})/.exec(pulled)![1]!;
    await ok(d, ['image', 'rm', fromSkopeo]);
    await ok(d, ['image', 'pull', `${reg.host}/skopeo/made@${digest}`]);
    t.equal(await imageId(d, `${reg.host}/skopeo/made@${digest}`), made.id, 'pull by digest');

    const missing = await d.cli(['image', 'pull', `${reg.host}/no/such:1`]);
    t.not(missing.code, 0);
    t.match(missing.stderr, /not found in registry/, 'unknown repository: clear error');
  });

const tlsWithAuth = (t: Test, { d, secure: reg }: Env) =>
  t.test('TLS + basic auth: login stores 0600 credentials, refused without them', async (t) => {
    const env = { TSSWARM_CONFIG: join(d.dir, 'client-config') };
    const name = `${reg.host}/secure/busybox:1`;
    await ok(d, ['image', 'tag', 'busybox:test', name]);

    const anon = await d.cli(['image', 'push', name], { env });
    t.not(anon.code, 0, 'push without login fails');
    t.match(anon.stderr, /requires authentication.*tsswarm login/, 'and says to log in');

    const bad = await d.cli(['login', reg.host, '-u', reg.user!, '--password-stdin'], {
      env,
      input: 'wrong',
    });
    t.not(bad.code, 0, 'wrong password refused');
    t.match(bad.stderr, /refused the username or password/);

    await ok(d, ['login', reg.host, '-u', reg.user!, '--password-stdin'], {
      env,
      input: `${reg.password}\n`,
    });
    const st = await fs.stat(join(env.TSSWARM_CONFIG, 'config.json'));
    t.equal(st.mode & 0o777, 0o600, 'credentials file is 0600');

    await ok(d, ['image', 'push', name], { env });
    await ok(d, ['image', 'rm', name]);
    await ok(d, ['image', 'pull', name], { env });
    t.equal(await runEcho(d, name, 'tls ok'), 'tls ok');

    // skopeo reads what tsswarm pushed over TLS with the same credentials
    const out = join(d.dir, 'layout');
    await skopeo(reg, ['copy', ...skopeoSrcArgs(reg), `docker://${name}`, `oci:${out}:1`]);
    await validateLayout(t, out);

    const logs = await fs.readFile(join(d.dir, 'client-config', 'config.json'), 'utf8');
    t.ok(logs.includes('auths'), 'stored in the auths map');
    await ok(d, ['logout', reg.host], { env });
    const after = await d.cli(['image', 'pull', name], { env });
    t.match(after.stderr, /requires authentication/, 'after logout the registry refuses again');
    t.ok(registryAuthHeader(reg).startsWith('Basic '), 'registry is basic-auth');
  });

const manifestLists = (t: Test, { d, plain: reg }: Env) =>
  t.test('manifest lists: the host platform by default, --platform picks another', async (t) => {
    const digests: Record<string, { digest: string; size: number }> = {};
    for (const [src, repoTag] of [
      ['busybox:test', 'multi:amd'],
      ['cow:test', 'multi:arm'],
    ] as const) {
      const name = `${reg.host}/${repoTag}`;
      await ok(d, ['image', 'tag', src, name]);
      const out = await ok(d, ['image', 'push', name]);
      const m = /digest: (sha256:[a-f0-9]{64}) size: (\d+)/.exec(out)!;
      digests[repoTag] = { digest: m[1]!, size: Number(m[2]) };
    }
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [
          {
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            ...digests['multi:amd'],
            platform: { os: 'linux', architecture: 'amd64' },
          },
          {
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            ...digests['multi:arm'],
            platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
          },
        ],
      }),
    );
    const put = await fetch(`${reg.url}/v2/multi/manifests/all`, {
      method: 'PUT',
      headers: { 'content-type': 'application/vnd.oci.image.index.v1+json' },
      body: index,
    });
    t.equal(put.status, 201, 'index stored');
    const busyboxId = await imageId(d, 'busybox:test');
    const cowId = await imageId(d, 'cow:test');
    await ok(d, ['image', 'pull', `${reg.host}/multi:all`]);
    t.equal(await imageId(d, `${reg.host}/multi:all`), busyboxId, 'linux/amd64 picked for this host');
    await ok(d, ['image', 'pull', '--platform', 'linux/arm64', `${reg.host}/multi:all`]);
    t.equal(await imageId(d, `${reg.host}/multi:all`), cowId, '--platform linux/arm64 picks the other');
    const none = await d.cli(['image', 'pull', '--platform', 'linux/s390x', `${reg.host}/multi:all`]);
    t.match(none.stderr, /no matching manifest for linux\/s390x/, 'no image for the platform: clear error');
    const badPlat = await d.cli(['image', 'pull', '--platform', 'amd64', `${reg.host}/multi:all`]);
    t.match(badPlat.stderr, /invalid platform "amd64"/);
    t.equal(sha256(index).length, 64);

    // a build's FROM --platform pulls that platform's image of the index
    await ok(d, ['image', 'rm', `${reg.host}/multi:all`]);
    const ctx = join(d.dir, 'platform-ctx');
    await fs.mkdir(ctx, { recursive: true });
    await fs.writeFile(
      join(ctx, 'Dockerfile'),
      `FROM --platform=linux/arm64 ${reg.host}/multi:all\nLABEL picked=arm64\n`,
    );
    const built = await ok(d, ['build', '-t', 'plat:arm', ctx]);
    t.match(built, /Pulling \S+\/multi:all \(linux\/arm64\)/, 'the build pulls for the platform');
    const layersOf = async (ref: string) => JSON.parse(await ok(d, ['image', 'inspect', ref]))[0].layers;
    t.not(JSON.stringify(await layersOf('cow:test')), JSON.stringify(await layersOf('busybox:test')));
    t.same(
      await layersOf('plat:arm'),
      await layersOf('cow:test'),
      "FROM --platform=linux/arm64 builds on the index's arm64 image (cow:test's layers)",
    );
  });

/** A layer with busybox alone (/bin/busybox), for images that run `/bin/busybox …`. */
async function busyboxLayer() {
  return buildLayer({
    '/bin': { dir: true },
    '/bin/busybox': { content: await fs.readFile('/bin/busybox'), mode: 0o755 },
  });
}

/**
 * Loads an image archive, pushes it to `reg` as `REPO:1` and removes it from the daemon again;
 * returns the pushed name and the layers of its manifest in the registry.
 */
async function pushOnly(d: TestDaemon, reg: TestRegistry, archive: string, local: string, repo: string) {
  await ok(d, ['image', 'load', '-i', archive]);
  const name = `${reg.host}/${repo}:1`;
  await ok(d, ['image', 'tag', local, name]);
  await ok(d, ['image', 'push', name]);
  await ok(d, ['image', 'rm', name, local]);
  const manifest = JSON.parse(
    await (
      await fetch(`${reg.url}/v2/${repo}/manifests/1`, {
        headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
      })
    ).text(),
  ) as { layers: Array<{ digest: string; size: number }> };
  return { name, layers: manifest.layers };
}

/**
 * A relay in front of the registry that records every request and cuts the first GET of one
 * blob after `cutAt` bytes — or, with `stall`, sends those bytes and then nothing, holding the
 * response open until the daemon closes it (`stalled.held`, `stalled.closed`) or `release()`.
 */
async function startRelay(
  t: Tap | Test,
  reg: TestRegistry,
  cutDigest: () => string | undefined,
  cutAt: number,
  opts: { stall?: boolean } = {},
) {
  const requests: Array<{ method: string; url: string; range?: string }> = [];
  const stalled = { held: false, closed: false };
  let release = () => {};
  let cut = false;
  const target = new URL(reg.url);
  const server = http.createServer((req, res) => {
    requests.push({
      method: req.method ?? '',
      url: req.url ?? '',
      ...(req.headers.range ? { range: req.headers.range } : {}),
    });
    const up = http.request(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: reg.host },
      },
      (ur) => {
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        const digest = cutDigest();
        if (!cut && digest && req.method === 'GET' && req.url?.endsWith(`/blobs/${digest}`)) {
          cut = true;
          let sent = 0;
          const onData = (c: Buffer) => {
            const part = c.subarray(0, cutAt - sent);
            sent += part.length;
            res.write(part);
            if (sent < cutAt) return;
            ur.off('data', onData);
            if (!opts.stall) {
              ur.resume();
              setTimeout(() => res.destroy(), 100);
              return;
            }
            ur.pause();
            stalled.held = true;
            res.once('close', () => (stalled.closed = true));
            release = () => {
              res.write(c.subarray(part.length));
              ur.pipe(res);
              ur.resume();
            };
          };
          ur.on('data', onData);
          return;
        }
        ur.pipe(res);
      },
    );
    req.pipe(up);
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  server.on('connection', (s) => t.teardown(() => s.destroy()));
  /** A stalled response goes on with the rest of the blob. */
  const go = () => release();
  return { host: `127.0.0.1:${port}`, requests, stalled, release: go };
}

const resumeCorruptPrune = (t: Test, { d, plain: reg }: Env) =>
  t.test(
    'an interrupted pull resumes; a corrupt blob is refused; prune collects unused layers',
    async (t) => {
      const layers = Array.from({ length: 5 }, (_, i) =>
        buildLayer({ [`/data${i}`]: { dir: true }, [`/data${i}/blob`]: { content: randomBytes(1 << 20) } }),
      );
      const many = await makeImage(d.dir, {
        name: 'many:1',
        layers: [await busyboxLayer(), ...layers],
      });
      const { name, layers: pushed } = await pushOnly(d, reg, many.ociArchive, 'many:1', 'tsswarm/many');
      const manifest = { layers: pushed };

      // the 4th layer is cut in the middle of its first download
      const victim = manifest.layers[3]!;
      const relay = await startRelay(t, reg, () => victim.digest, Math.floor(victim.size / 2));
      const viaRelay = `${relay.host}/tsswarm/many:1`;
      const first = await d.cli(['image', 'pull', viaRelay], { timeoutMs: 120_000 });
      t.not(first.code, 0, 'the cut pull fails');
      t.match(first.stderr, /interrupted|does not match/, 'saying why');
      const downloads = join(d.dataRoot, 'images', 'downloads');
      const left = await fs.readdir(downloads);
      t.ok(left.includes(`${victim.digest.slice(7)}.partial`), 'the cut blob is kept as .partial');
      const finished = manifest.layers.filter((l) => left.includes(l.digest.slice(7)));
      t.ok(finished.length >= 1, `finished layers kept (${finished.length})`);
      t.notOk((await d.cli(['image', 'inspect', viaRelay])).code === 0, 'no image after a failed pull');

      relay.requests.length = 0;
      const second = await ok(d, ['image', 'pull', viaRelay]);
      t.match(second, /Resuming from \d+ bytes/, 'the cut layer resumes');
      const blobGets = relay.requests.filter((r) => r.method === 'GET' && r.url.includes('/blobs/'));
      for (const l of finished)
        t.notOk(
          blobGets.some((r) => r.url.endsWith(l.digest)),
          `finished layer ${l.digest.slice(7, 19)} not fetched again`,
        );
      const resumed = blobGets.find((r) => r.url.endsWith(victim.digest));
      t.match(resumed?.range ?? '', /^bytes=\d+-$/, 'the cut layer is asked for from where it stopped');
      t.equal(await imageId(d, viaRelay), many.id, 'resumed image is the pushed one');
      t.same(await fs.readdir(downloads), [], 'downloads are moved into the store');

      // two pulls of one image at once on a node: one download of each blob
      await ok(d, ['image', 'rm', viaRelay]);
      await ok(d, ['image', 'prune']);
      relay.requests.length = 0;
      await Promise.all([ok(d, ['image', 'pull', viaRelay]), ok(d, ['image', 'pull', viaRelay])]);
      for (const l of manifest.layers) {
        const gets = relay.requests.filter((r) => r.method === 'GET' && r.url.endsWith(l.digest)).length;
        t.equal(gets, 1, `layer ${l.digest.slice(7, 19)} fetched once for two concurrent pulls`);
      }

      // a pull stops once every client waiting for it has gone; the next one resumes
      await ok(d, ['image', 'rm', viaRelay]);
      await ok(d, ['image', 'prune']);
      const stall = await startRelay(t, reg, () => victim.digest, Math.floor(victim.size / 2), {
        stall: true,
      });
      const viaStall = `${stall.host}/tsswarm/many:1`;
      const printed = [0, 0];
      const clients = [0, 1].map((i) => {
        const c = spawn(process.execPath, [CLI, '-H', `unix://${d.socket}`, 'image', 'pull', viaStall], {
          stdio: ['ignore', 'pipe', 'ignore'],
        });
        c.stdout.on('data', (b: Buffer) => (printed[i]! += b.length));
        return c;
      });
      t.teardown(() => {
        for (const c of clients) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      });
      // both clients wait for the pull (each printed its progress) and it is stuck on the layer
      await until(
        'both clients following the pull, the stalled layer being fetched',
        async () => ({ printed, held: stall.stalled.held }),
        (v) => v.held && v.printed.every((n) => n > 0),
        60_000,
      );
      clients[0]!.kill('SIGKILL');
      await sleep(1500);
      t.notOk(stall.stalled.closed, 'one of two clients gone: the pull goes on');
      clients[1]!.kill('SIGKILL');
      await until('the daemon closes the stalled download', async () => stall.stalled.closed, Boolean);
      t.pass('the last client gone: the download is closed');
      const after = await ok(d, ['image', 'pull', viaRelay]);
      t.match(after, /Resuming from \d+ bytes/, 'the next pull resumes the stopped layer');
      t.equal(await imageId(d, viaRelay), many.id);

      // two images with the same layers pulled at once share their downloads: one pull that
      // stops leaves the other's unpacked layers alone
      const twin = `${reg.host}/tsswarm/many-twin:1`;
      await ok(d, ['image', 'tag', viaRelay, twin]);
      await ok(d, ['image', 'push', twin]);
      await ok(d, ['image', 'rm', viaRelay, twin]);
      await ok(d, ['image', 'prune']);
      const stall2 = await startRelay(t, reg, () => victim.digest, Math.floor(victim.size / 2), {
        stall: true,
      });
      const gone = spawn(
        process.execPath,
        [CLI, '-H', `unix://${d.socket}`, 'image', 'pull', `${stall2.host}/tsswarm/many:1`],
        { stdio: 'ignore' },
      );
      t.teardown(() => {
        if (gone.exitCode === null && gone.signalCode === null) gone.kill('SIGKILL');
      });
      const staying = d.cli(['image', 'pull', `${stall2.host}/tsswarm/many-twin:1`], { timeoutMs: 120_000 });
      await until('both pulls stuck on the shared layer', async () => stall2.stalled.held, Boolean, 60_000);
      await sleep(1000); // (the twin's pull has joined the downloads by now)
      gone.kill('SIGKILL');
      await sleep(1000);
      stall2.release();
      const twinPull = await staying;
      t.equal(twinPull.code, 0, `the other pull completes: ${twinPull.stderr}`);
      t.equal(await imageId(d, `${stall2.host}/tsswarm/many-twin:1`), many.id, 'with every layer');

      await ok(d, ['image', 'rm', `${stall2.host}/tsswarm/many-twin:1`]);

      // corrupt one blob in the registry's storage: the pull is refused and leaves nothing behind
      const blobsBefore = (await fs.readdir(join(d.dataRoot, 'images', 'blobs', 'sha256'))).sort();
      const layersBefore = (await fs.readdir(join(d.dataRoot, 'images', 'layers'))).sort();
      const target = manifest.layers[2]!.digest.slice(7);
      const data = join(
        reg.dir,
        'data',
        'docker',
        'registry',
        'v2',
        'blobs',
        'sha256',
        target.slice(0, 2),
        target,
        'data',
      );
      const bytes = await fs.readFile(data);
      bytes[bytes.length >> 1] = bytes[bytes.length >> 1]! ^ 0xff;
      await fs.writeFile(data, bytes);
      const corrupt = await d.cli(['image', 'pull', name], { timeoutMs: 120_000 });
      t.not(corrupt.code, 0, 'corrupt blob: pull fails');
      t.match(corrupt.stderr, /does not match its descriptor/, 'the blob is refused by digest');
      t.notOk((await d.cli(['image', 'inspect', name])).code === 0, 'no image');
      t.same(
        (await fs.readdir(join(d.dataRoot, 'images', 'blobs', 'sha256'))).sort(),
        blobsBefore,
        'no blob added',
      );
      t.same((await fs.readdir(join(d.dataRoot, 'images', 'layers'))).sort(), layersBefore, 'no layer added');
      t.notOk(
        (await fs.readdir(downloads)).some((f) => f.startsWith(target)),
        'nothing half-written of the corrupt blob',
      );

      // prune: an image whose tag moved away is dangling; its layers go with it
      const oldName = `${reg.host}/tsswarm/small:1`;
      const small = await makeImage(d.dir, {
        name: oldName,
        layers: [buildLayer({ '/only-here': { content: randomBytes(4096) } })],
      });
      await ok(d, ['image', 'load', '-i', small.ociArchive]);
      await ok(d, ['image', 'push', oldName]);
      await ok(d, ['image', 'rm', oldName]);
      await ok(d, ['image', 'pull', oldName]);
      const cowId = await imageId(d, oldName);
      t.equal(cowId, small.id, 'pulled back');
      await ok(d, ['image', 'tag', 'busybox:test', oldName]); // the pulled image is now untagged
      const layersWithCow = await fs.readdir(join(d.dataRoot, 'images', 'layers'));
      const pruned = await ok(d, ['image', 'prune']);
      t.match(pruned, new RegExp(`Deleted: ${cowId}`), 'the dangling image is deleted');
      t.match(pruned, /Total reclaimed space: /);
      const layersAfter = await fs.readdir(join(d.dataRoot, 'images', 'layers'));
      t.ok(
        layersAfter.length < layersWithCow.length,
        `its own layer is collected (${layersWithCow.length} → ${layersAfter.length})`,
      );
      t.equal(await runEcho(d, 'busybox:test', 'still here'), 'still here', 'tagged images are kept');
    },
  );

const pullProgress = (t: Test, { d, plain: reg }: Env) =>
  t.test(
    "a node pulls a task's image: the task is preparing with the pull's progress, then runs",
    async (t) => {
      await initSwarm(t, d);
      const payload = buildLayer({ '/payload': { content: randomBytes(2 << 20) } });
      const image = await makeImage(d.dir, {
        name: 'slow:1',
        layers: [await busyboxLayer(), payload],
      });
      const { layers } = await pushOnly(d, reg, image.ociArchive, 'slow:1', 'tsswarm/slow');
      const victim = layers[1]!;
      const relay = await startRelay(t, reg, () => victim.digest, Math.floor(victim.size / 2), {
        stall: true,
      });
      const ref = `${relay.host}/tsswarm/slow:1`;
      await ok(d, ['service', 'create', '--name', 'pulled', ref, '/bin/busybox', 'sleep', '600']);
      const tasks = () => cliJson<TaskRecord[]>(d, ['service', 'ps', 'pulled']);
      const seen = await until('the task preparing, with the progress of its pull', tasks, (ts) =>
        ts.some(
          (x) =>
            x.status.state === 'preparing' &&
            /: 1\/2 layers, [\d.]+ of [\d.]+ MB$/.test(x.status.message ?? ''),
        ),
      );
      t.match(
        seen.find((x) => x.status.state === 'preparing')?.status.message,
        new RegExp(`^pulling ${ref.replaceAll('.', '\\.')}: 1/2 layers, [\\d.]+ of [\\d.]+ MB$`),
        'the message: layers done of all, and megabytes',
      );
      relay.release();
      await until('the task running once its image is pulled', tasks, (ts) =>
        ts.some((x) => x.status.state === 'running'),
      );
      t.pass('the task runs once its image is pulled');
      await ok(d, ['service', 'rm', 'pulled']);
    },
  );

t.test('registries', async (t) => {
  const env = await setUp(t);
  await plainRegistry(t, env);
  await tlsWithAuth(t, env);
  await manifestLists(t, env);
  await resumeCorruptPrune(t, env);
  await pullProgress(t, env);
});
