/**
 * Images: (1) a pull of a many-layer image from a registry on loopback (Debian's docker-registry)
 * by `tsswarm image pull`, side by side with `skopeo copy` of the same image into a local OCI
 * layout, interleaved run by run; prints both and the ratio. skopeo only stores the blobs;
 * tsswarm also verifies every layer's diff_id and unpacks it (what a container needs).
 * (2) the time of a fully cached `tsswarm build` of a ten-step Dockerfile (and of its first,
 * uncached build, for scale).
 *
 *   node dist/bench/registry.js [--runs 7] [--layers 16] [--layer-mib 4] [--rebuilds 10]
 *
 * Between pull runs the image is removed and `image prune` empties the store (not timed).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildLayer, makeImage } from '../test/lib/images.js';
import { skopeo, skopeoSrcArgs, startRegistry } from '../test/lib/registry.js';
import {
  CLI,
  type Cleanup,
  intArg,
  loadBusybox,
  nowMs,
  printHeader,
  registerSweep,
  runBench,
  startBenchDaemon,
  summarize,
  table,
  uniquePrefix,
} from './lib.js';

const run = promisify(execFile);
const RUNS = intArg('runs', 7);
const LAYERS = intArg('layers', 16);
const LAYER_MIB = intArg('layer-mib', 4);
const REBUILDS = intArg('rebuilds', 10);

const DOCKERFILE = `FROM busybox:bench
ARG VERSION=1
ENV APP=/app
WORKDIR /app
COPY src/ ./src/
RUN echo "version $VERSION" > /app/version && ls src > /app/list
RUN mkdir -p /app/data && echo ready > /app/data/state
LABEL org.example.bench=yes
EXPOSE 8080
USER 1000
CMD ["cat", "/app/version"]
`;

async function bench(cleanup: Cleanup): Promise<number> {
  const prefix = uniquePrefix();
  registerSweep(prefix, cleanup);
  printHeader(
    `image pull (${LAYERS} layers × ${LAYER_MIB} MiB) vs skopeo copy, ${RUNS} runs; cached rebuild, ${REBUILDS} runs`,
    prefix,
  );
  const d = await startBenchDaemon(prefix, cleanup);
  const t = { teardown: (fn: () => unknown) => cleanup.add('registry', fn) };
  const reg = await startRegistry(t);
  const cli = async (args: string[]) => {
    const r = await run(process.execPath, [CLI, '-H', `unix://${d.socket}`, ...args], {
      maxBuffer: 64 << 20,
    });
    return r.stdout;
  };
  const busybox = await loadBusybox(d);
  await cli(['image', 'tag', busybox.id, 'busybox:bench']);

  // the many-layer image: incompressible content, gzip layers, pushed once
  const layers = Array.from({ length: LAYERS }, (_, i) =>
    buildLayer({ [`/l${i}`]: { dir: true }, [`/l${i}/data`]: { content: randomBytes(LAYER_MIB << 20) } }),
  );
  const name = `${reg.host}/bench/many:1`;
  const img = await makeImage(d.dir, { name, layers });
  await cli(['image', 'load', '-i', img.ociArchive]);
  await cli(['image', 'push', '-q', name]);
  await cli(['image', 'rm', name]);
  await cli(['image', 'prune']);
  const total = layers.reduce((n, l) => n + l.tar.length, 0);

  const times = { tsswarm: [] as number[], api: [] as number[], skopeo: [] as number[] };
  const tools: Array<keyof typeof times> = ['tsswarm', 'api', 'skopeo'];
  for (let i = 0; i < RUNS; i++) {
    const order = [...tools.slice(i % 3), ...tools.slice(0, i % 3)];
    for (const tool of order) {
      if (tool === 'tsswarm' || tool === 'api') {
        const t0 = nowMs();
        if (tool === 'tsswarm') await cli(['image', 'pull', '-q', name]);
        else {
          // the daemon's pull alone: the same request without the CLI process (Node's start-up)
          const res = await d.client.stream('POST', '/images/pull', { query: { ref: name } });
          const text = await new Promise<string>((resolve) => {
            let s = '';
            res.on('data', (c: Buffer) => {
              s += c;
            });
            res.on('end', () => resolve(s));
          });
          if (!text.includes('"result"')) throw new Error(`pull failed: ${text.slice(-300)}`);
        }
        times[tool].push(nowMs() - t0);
        await cli(['image', 'rm', name]);
        await cli(['image', 'prune']);
      } else {
        const out = join(d.dir, `oci-${i}`);
        const t0 = nowMs();
        await skopeo(reg, ['copy', '-q', ...skopeoSrcArgs(reg), `docker://${name}`, `oci:${out}:1`], {
          timeoutMs: 300_000,
        });
        times.skopeo.push(nowMs() - t0);
        await fs.rm(out, { recursive: true, force: true });
      }
    }
  }
  const a = summarize(times.tsswarm);
  const api = summarize(times.api);
  const b = summarize(times.skopeo);
  const ms = (v: number) => `${v.toFixed(0)} ms`;
  const mbps = (v: number) => `${(total / 1e6 / (v / 1000)).toFixed(0)} MB/s`;
  console.log(`\npull of ${name}: ${LAYERS} layers, ${(total / 1e6).toFixed(1)} MB uncompressed\n`);
  console.log(
    table(
      ['tool', 'runs', 'median', 'p90', 'min', 'max', 'throughput (median)'],
      [
        ['tsswarm image pull', String(a.n), ms(a.median), ms(a.p90), ms(a.min), ms(a.max), mbps(a.median)],
        [
          '  (daemon API only)',
          String(api.n),
          ms(api.median),
          ms(api.p90),
          ms(api.min),
          ms(api.max),
          mbps(api.median),
        ],
        ['skopeo copy → oci:', String(b.n), ms(b.median), ms(b.p90), ms(b.min), ms(b.max), mbps(b.median)],
      ],
      [0],
    ),
  );
  console.log(`ratio tsswarm/skopeo (median): ${(a.median / b.median).toFixed(2)}×`);
  console.log(`ratio tsswarm daemon API/skopeo (median): ${(api.median / b.median).toFixed(2)}×`);

  // a fully cached rebuild
  const ctx = join(d.dir, 'ctx');
  await fs.mkdir(join(ctx, 'src'), { recursive: true });
  for (let i = 0; i < 50; i++)
    await fs.writeFile(join(ctx, 'src', `f${i}.txt`), randomBytes(8192).toString('hex'));
  await fs.writeFile(join(ctx, 'Dockerfile'), DOCKERFILE);
  const t0 = nowMs();
  await cli(['build', '-q', '-t', 'bench/app:1', ctx]);
  const first = nowMs() - t0;
  const rebuilds: number[] = [];
  for (let i = 0; i < REBUILDS; i++) {
    const t1 = nowMs();
    const out = await cli(['build', '-t', 'bench/app:1', ctx]);
    rebuilds.push(nowMs() - t1);
    const ran = out.split('\n').filter((l) => l.startsWith(' ---> Running in'));
    if (ran.length) throw new Error(`a rebuild ran steps instead of using the cache:\n${out}`);
  }
  const r = summarize(rebuilds);
  console.log(`\nbuild of a 10-step Dockerfile (2 RUN, 1 COPY of 50 files): first build ${ms(first)}\n`);
  console.log(
    table(
      ['fully cached rebuild', 'runs', 'median', 'p90', 'min', 'max'],
      [['tsswarm build', String(r.n), ms(r.median), ms(r.p90), ms(r.min), ms(r.max)]],
      [0],
    ),
  );
  return 0;
}

runBench(bench);
