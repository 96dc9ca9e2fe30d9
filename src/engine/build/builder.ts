/**
 * `tsswarm build`: runs a Dockerfile against the engine. Each step makes an image in the store
 * (untagged, its parent the step before): RUN in a container of the engine, its container
 * layer's diff the new layer; COPY/ADD from the context (or a stage) laid out in a staging
 * directory that becomes the layer; the other instructions change the config only.
 *
 * Cache (Docker's rules): a step reuses the image it made before when its parent image and the
 * instruction (expanded; for RUN also the build args in effect; for COPY/ADD also the checksum
 * of the files it copies) are the same. A miss rebuilds that step and so every step after it
 * (their parent changed). `noCache` skips lookups.
 */

import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, promises as fs, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { invalid, TsswarmError } from '../../api/errors.js';
import { followLogs, openLiveLog, readLogs } from '../containers/logs.js';
import type { ContainerManager } from '../containers/manager.js';
import { LAYER_MEDIA_TYPES } from '../images/layer.js';
import { hostPlatform, MEDIA, type Platform } from '../images/oci.js';
import { registryOf } from '../images/reference.js';
import type { ImageStore } from '../images/store.js';
import type { BlobDescriptor, ImageConfig } from '../images/types.js';
import type { RegistryCredentials } from '../registry/auth.js';
import { type ImagePuller, parsePlatform } from '../registry/pull.js';
import { BuildCache } from './cache.js';
import {
  checksumSources,
  findSources,
  mirrorParents,
  placeSources,
  resolveChown,
  resolveInRoot,
} from './context.js';
import {
  type Dockerfile,
  EXPANDS,
  expandInstruction,
  expandValue,
  exposedPorts,
  findStage,
  type Instruction,
  parseDockerfile,
  stageIndex,
} from './dockerfile.js';
import { writeLayerFromDir } from './layerdiff.js';
import { platformArgs, platformText, samePlatform } from './platform.js';

const exec = promisify(execFile);

/** The directory the CLI sends a Dockerfile from outside the context in (see cli/build.ts). */
export const OUTSIDE_DOCKERFILE_DIR = /^\.tsswarm-dockerfile-[0-9a-f]+$/;

export interface BuildOptions {
  /** The build context (a directory the builder may read). */
  context: string;
  /** The Dockerfile's path relative to the context. */
  dockerfile: string;
  /**
   * The client put the Dockerfile into the context from outside it, in a directory of its own
   * (`DIR/NAME`): DIR is removed once the Dockerfile is read, so no COPY sees it.
   */
  dockerfileOutside?: boolean;
  tags: string[];
  buildArgs: Record<string, string>;
  noCache: boolean;
  target?: string;
  /** Credentials per registry host, for FROM images that must be pulled. */
  registryAuth?: Record<string, RegistryCredentials>;
  /** Aborted when the client goes away: the running step's container is killed, no step follows. */
  signal?: AbortSignal;
  /** Build output, Docker's lines ("Step 1/5 : FROM …", " ---> Using cache", RUN output…). */
  out: (text: string) => void;
}

export interface BuildResult {
  id: string;
  tags: string[];
  /** Steps that came from the cache and that ran, in order ('cached' | 'built'). */
  steps: Array<{ instruction: string; cached: boolean }>;
}

/** Build args Docker always knows (not reported as unused). */
const PREDEFINED_ARGS = new Set([
  'HTTP_PROXY',
  'http_proxy',
  'HTTPS_PROXY',
  'https_proxy',
  'FTP_PROXY',
  'ftp_proxy',
  'NO_PROXY',
  'no_proxy',
  'ALL_PROXY',
  'all_proxy',
]);

/** The full image config document (OCI image config), as stored in the config blob. */
interface ConfigDoc {
  architecture: string;
  os: string;
  variant?: string;
  created?: string;
  config: ImageConfig & { Shell?: string[]; OnBuild?: string[] };
  rootfs: { type: 'layers'; diff_ids: string[] };
  history?: Array<{ created?: string; created_by?: string; empty_layer?: boolean; comment?: string }>;
}

interface State {
  /** The image of the last step; undefined for scratch with no step yet. */
  imageId?: string;
  doc: ConfigDoc;
  layers: BlobDescriptor[];
  /** ARGs declared in this stage, with their values. */
  args: Map<string, string>;
  /** Whether CMD was set in this stage (ENTRYPOINT resets an inherited CMD). */
  cmdSet: boolean;
}

/** Marks the containers RUN steps use (removed at start-up if a build was interrupted). */
export const BUILD_LABEL = 'org.tsswarm.build';

const short = (id: string) => id.replace(/^sha256:/, '').slice(0, 12);
const DEFAULT_SHELL = ['/bin/sh', '-c'];
/** The engine's bind targets for /etc/hostname, /etc/hosts, /etc/resolv.conf: not part of a layer. */
const PLACEHOLDERS = new Set(['etc/hostname', 'etc/hosts', 'etc/resolv.conf']);

export class Builder {
  private readonly cache: BuildCache;

  constructor(
    private readonly store: ImageStore,
    private readonly containers: ContainerManager,
    private readonly puller: ImagePuller,
    private readonly workRoot: string,
  ) {
    this.cache = new BuildCache(path.join(workRoot, 'build-cache.json'));
  }

  async build(o: BuildOptions): Promise<BuildResult> {
    const dfPath = path.resolve(o.context, o.dockerfile);
    if (!dfPath.startsWith(`${path.resolve(o.context)}/`))
      throw invalid(`the Dockerfile ${o.dockerfile} must be inside the build context`);
    let text: string;
    try {
      text = await fs.readFile(dfPath, 'utf8');
    } catch {
      throw invalid(`cannot read the Dockerfile ${o.dockerfile}: no such file in the build context`);
    }
    if (o.dockerfileOutside) {
      const dir = path.dirname(dfPath);
      if (path.dirname(dir) !== path.resolve(o.context) || !OUTSIDE_DOCKERFILE_DIR.test(path.basename(dir)))
        throw invalid(
          `a Dockerfile from outside the context comes as .tsswarm-dockerfile-<hex>/NAME, not ${o.dockerfile}`,
        );
      await fs.rm(dir, { recursive: true, force: true });
    }
    const df = parseDockerfile(text, path.basename(o.dockerfile));
    if (df.stages.length === 0)
      throw invalid(`${df.file}: no FROM instruction: a Dockerfile starts with FROM`);
    const last = o.target !== undefined ? stageIndex(df, o.target) : df.stages.length - 1;
    const used = new Set<string>();
    // the automatic platform ARGs are global: FROM lines see them, a stage once it declares them
    const globalArgs = new Map(Object.entries(platformArgs(hostPlatform(), hostPlatform())));
    for (const a of df.args) {
      for (const d of a.args) {
        used.add(d.name);
        const v =
          o.buildArgs[d.name] ??
          (d.default !== undefined
            ? expandValue(d.default, Object.fromEntries(globalArgs), df.escape)
            : undefined);
        if (v !== undefined) globalArgs.set(d.name, v);
      }
    }
    const total =
      df.args.length + df.stages.slice(0, last + 1).reduce((n, s) => n + 1 + s.instructions.length, 0);
    let step = 0;
    for (const a of df.args) o.out(`Step ${++step}/${total} : ${a.original}\n`);
    const results: string[] = [];
    const steps: BuildResult['steps'] = [];
    const work = await fs.mkdtemp(path.join(this.workRoot, 'build-'));
    try {
      for (let si = 0; si <= last; si++) {
        const stage = df.stages[si]!;
        const from = this.fromLine(df, stage.from.image, globalArgs);
        step++;
        o.out(`Step ${step}/${total} : ${stage.from.original}\n`);
        let platform: Platform | undefined;
        if (stage.from.platform !== undefined) {
          const text = expandValue(stage.from.platform, Object.fromEntries(globalArgs), df.escape).trim();
          try {
            platform = parsePlatform(text || undefined);
          } catch (err) {
            throw new TsswarmError(
              'invalid_argument',
              `${df.file}:${stage.from.line}: FROM --platform: ${(err as Error).message}`,
              { cause: err },
            );
          }
        }
        const state = await this.fromImage(from, platform, df, results, o);
        o.out(` ---> ${state.imageId ? short(state.imageId) : 'scratch'}\n`);
        // a global ARG is visible in a stage only once redeclared there (see step: arg)
        for (const raw of stage.instructions) {
          step++;
          o.out(`Step ${step}/${total} : ${raw.original}\n`);
          const where = `${df.file}:${raw.line}`;
          if (o.signal?.aborted) throw invalid('the build was cancelled (the client went away)');
          try {
            const cached = await this.step(raw, state, df, { globalArgs, used, results, work, o });
            steps.push({ instruction: raw.original, cached });
          } catch (err) {
            if (err instanceof TsswarmError && !err.message.startsWith(`${df.file}:`))
              throw new TsswarmError(err.code, `${where}: ${err.message}`, { cause: err });
            throw err;
          }
        }
        if (!state.imageId) state.imageId = await this.commit(state, undefined, 'FROM scratch');
        results[si] = state.imageId;
      }
      const unused = Object.keys(o.buildArgs).filter((k) => !used.has(k) && !PREDEFINED_ARGS.has(k));
      if (unused.length) o.out(`[Warning] One or more build-args [${unused.join(' ')}] were not consumed\n`);
      const id = results[last]!;
      await this.store.keepWith(id, results.slice(0, last));
      for (const t of o.tags) await this.store.tag(id, t);
      o.out(`Successfully built ${short(id)}\n`);
      for (const t of o.tags) o.out(`Successfully tagged ${t}\n`);
      return { id, tags: o.tags, steps };
    } finally {
      await fs.rm(work, { recursive: true, force: true });
    }
  }

  private fromLine(df: Dockerfile, image: string, globalArgs: Map<string, string>): string {
    const v = expandValue(image, Object.fromEntries(globalArgs), df.escape).trim();
    if (!v) throw invalid(`${df.file}: FROM names no image`);
    return v;
  }

  /** The state a stage starts from: scratch, an earlier stage, a local image, or a pulled one. */
  private async fromImage(
    ref: string,
    platform: Platform | undefined,
    df: Dockerfile,
    results: string[],
    o: BuildOptions,
  ): Promise<State> {
    const fresh = (doc: ConfigDoc, layers: BlobDescriptor[], imageId?: string): State => ({
      ...(imageId ? { imageId } : {}),
      doc,
      layers,
      args: new Map(),
      cmdSet: false,
    });
    if (ref === 'scratch') {
      const { os, architecture, variant } = platform ?? (hostPlatform() as Platform);
      return fresh(
        {
          architecture: architecture ?? '',
          os: os ?? '',
          ...(variant ? { variant } : {}),
          config: {},
          rootfs: { type: 'layers', diff_ids: [] },
          history: [],
        },
        [],
      );
    }
    const configOf = (id: string) => {
      const m = this.store.manifestOf(id);
      const doc = JSON.parse(readFileSync(this.store.blobPath(m.config.digest), 'utf8')) as ConfigDoc;
      return { m, doc };
    };
    const stage = findStage(df, ref);
    let id: string | undefined;
    if (stage !== undefined && results[stage] !== undefined) id = results[stage]!;
    else {
      try {
        id = this.store.resolve(ref).id;
      } catch (err) {
        if (!(err instanceof TsswarmError) || err.code !== 'not_found') throw err;
      }
      // a local image of another platform than FROM --platform asks for is pulled again for it
      const local = id !== undefined && platform ? configOf(id).doc : undefined;
      if (local && platform && !samePlatform(local, platform)) {
        o.out(`${ref} is ${platformText(local)} here, not ${platformText(platform)}\n`);
        id = undefined;
      }
      if (id === undefined) {
        o.out(`Pulling ${ref}${platform ? ` (${platformText(platform)})` : ''}\n`);
        const creds = o.registryAuth?.[registryOf(ref)];
        id = (
          await this.puller.pull(ref, {
            ...(creds ? { creds } : {}),
            ...(platform ? { platform } : {}),
            ...(o.signal ? { signal: o.signal } : {}),
          })
        ).image.id;
      }
    }
    const { m, doc } = configOf(id);
    doc.config ??= {};
    doc.history ??= [];
    return fresh(doc, m.layers, id);
  }

  /** Runs one instruction; returns whether it came from the cache. */
  private async step(
    raw: Instruction,
    state: State,
    df: Dockerfile,
    ctx: {
      globalArgs: Map<string, string>;
      used: Set<string>;
      results: string[];
      work: string;
      o: BuildOptions;
    },
  ): Promise<boolean> {
    const { o } = ctx;
    const env = this.envOf(state);
    const vars: Record<string, string> = { ...Object.fromEntries(state.args), ...env };
    const instr = EXPANDS.has(raw.kind) ? expandInstruction(raw, vars, df.escape) : raw;
    const cfg = state.doc.config;
    const meta = async (created: string, change: () => void): Promise<boolean> => {
      const key = `${state.imageId ?? 'scratch'}\n${created}`;
      if (await this.reuse(key, state, o)) return true;
      change();
      state.imageId = await this.commit(state, undefined, created);
      await this.cache.put(key, state.imageId);
      o.out(` ---> ${short(state.imageId)}\n`);
      return false;
    };
    switch (instr.kind) {
      case 'arg': {
        for (const a of instr.args) {
          ctx.used.add(a.name);
          const v = o.buildArgs[a.name] ?? a.default ?? ctx.globalArgs.get(a.name);
          if (v !== undefined) state.args.set(a.name, v);
          else state.args.delete(a.name);
        }
        // ARG changes no image (its values reach RUN's cache key)
        return false;
      }
      case 'env':
        return meta(`ENV ${instr.pairs.map((p) => `${p.key}=${p.value}`).join(' ')}`, () => {
          const e = new Map((cfg.Env ?? []).map((x) => [x.split('=')[0]!, x]));
          for (const p of instr.pairs) e.set(p.key, `${p.key}=${p.value}`);
          cfg.Env = [...e.values()];
        });
      case 'label':
        return meta(`LABEL ${instr.pairs.map((p) => `${p.key}=${p.value}`).join(' ')}`, () => {
          cfg.Labels = {
            ...(cfg.Labels ?? {}),
            ...Object.fromEntries(instr.pairs.map((p) => [p.key, p.value])),
          };
        });
      case 'workdir': {
        const wd = path.posix.resolve(cfg.WorkingDir || '/', instr.path);
        return meta(`WORKDIR ${wd}`, () => {
          cfg.WorkingDir = wd;
        });
      }
      case 'user':
        return meta(`USER ${instr.user}`, () => {
          cfg.User = instr.user;
        });
      case 'expose': {
        const ports = instr.ports.flatMap((p) => exposedPorts(p));
        return meta(`EXPOSE ${ports.join(' ')}`, () => {
          cfg.ExposedPorts = {
            ...(cfg.ExposedPorts ?? {}),
            ...Object.fromEntries(ports.map((p) => [p, {}])),
          };
        });
      }
      case 'volume':
        return meta(`VOLUME ${JSON.stringify(instr.paths)}`, () => {
          cfg.Volumes = { ...(cfg.Volumes ?? {}), ...Object.fromEntries(instr.paths.map((p) => [p, {}])) };
        });
      case 'stopsignal':
        return meta(`STOPSIGNAL ${instr.signal}`, () => {
          cfg.StopSignal = instr.signal;
        });
      case 'shell':
        return meta(`SHELL ${JSON.stringify(instr.shell)}`, () => {
          cfg.Shell = instr.shell;
        });
      case 'healthcheck': {
        const h =
          instr.test[0] === 'NONE'
            ? { Test: ['NONE'] }
            : {
                Test: instr.test,
                ...(instr.interval ? { Interval: instr.interval } : {}),
                ...(instr.timeout ? { Timeout: instr.timeout } : {}),
                ...(instr.startPeriod ? { StartPeriod: instr.startPeriod } : {}),
                ...(instr.startInterval ? { StartInterval: instr.startInterval } : {}),
                ...(instr.retries ? { Retries: instr.retries } : {}),
              };
        return meta(`HEALTHCHECK ${JSON.stringify(h)}`, () => {
          cfg.Healthcheck = h;
        });
      }
      case 'cmd': {
        const argv = instr.form === 'exec' ? instr.args : [...(cfg.Shell ?? DEFAULT_SHELL), instr.command];
        const cached = await meta(`CMD ${JSON.stringify(argv)}`, () => {
          cfg.Cmd = argv;
        });
        state.cmdSet = true;
        return cached;
      }
      case 'entrypoint': {
        const argv = instr.form === 'exec' ? instr.args : [...(cfg.Shell ?? DEFAULT_SHELL), instr.command];
        return meta(`ENTRYPOINT ${JSON.stringify(argv)}`, () => {
          cfg.Entrypoint = argv;
          // an ENTRYPOINT resets a CMD inherited from the base image
          if (!state.cmdSet) delete cfg.Cmd;
        });
      }
      case 'run':
        return this.run(instr, state, ctx.work, o);
      case 'copy':
      case 'add':
        return this.copy(instr, state, df, ctx);
    }
  }

  private envOf(state: State): Record<string, string> {
    const out: Record<string, string> = {};
    for (const e of state.doc.config.Env ?? []) {
      const i = e.indexOf('=');
      if (i > 0) out[e.slice(0, i)] = e.slice(i + 1);
    }
    return out;
  }

  private async reuse(key: string, state: State, o: BuildOptions): Promise<boolean> {
    if (o.noCache) return false;
    let id: string | undefined;
    let m: ReturnType<ImageStore['manifestOf']> | undefined;
    for (const candidate of await this.cache.get(key)) {
      try {
        m = this.store.manifestOf(candidate);
        id = candidate;
        break;
      } catch {
        // pruned since
      }
    }
    if (!id || !m) return false;
    state.imageId = id;
    state.doc = JSON.parse(readFileSync(this.store.blobPath(m.config.digest), 'utf8')) as ConfigDoc;
    state.doc.config ??= {};
    state.layers = m.layers;
    o.out(' ---> Using cache\n');
    o.out(` ---> ${short(id)}\n`);
    return true;
  }

  /** Commits the state (plus a new layer) as an image whose parent is the state's image. */
  private async commit(
    state: State,
    layer: { blob: string; digest: string; diffId: string; size: number } | undefined,
    createdBy: string,
  ): Promise<string> {
    const created = new Date().toISOString();
    const doc: ConfigDoc = structuredClone(state.doc);
    doc.created = created;
    doc.history = [
      ...(doc.history ?? []),
      { created, created_by: createdBy, ...(layer ? {} : { empty_layer: true }) },
    ];
    const layers = state.layers.map((d) => ({ descriptor: d }));
    let staged: { blob: string; dir: string; size: number } | undefined;
    if (layer) {
      doc.rootfs = { type: 'layers', diff_ids: [...doc.rootfs.diff_ids, layer.diffId] };
      if (this.store.hasLayer(layer.diffId, layer.digest)) await fs.rm(layer.blob, { force: true });
      else {
        const s = await this.store.stageLayer(
          layer.blob,
          layer.diffId,
          `of step "${createdBy.slice(0, 60)}"`,
        );
        staged = { blob: layer.blob, dir: s.dir, size: s.size };
      }
    }
    const bytes = Buffer.from(JSON.stringify(doc));
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    const newLayer = layer
      ? [
          {
            descriptor: { mediaType: LAYER_MEDIA_TYPES.gzip, digest: layer.digest, size: layer.size },
            ...(staged ? { staged } : {}),
          },
        ]
      : [];
    const rec = await this.store.commit({
      config: { digest, mediaType: MEDIA.ociConfig, bytes },
      layers: [...layers, ...newLayer],
      tags: [],
      ...(state.imageId ? { parent: state.imageId } : {}),
    });
    state.doc = doc;
    if (layer) state.layers = [...state.layers, newLayer[0]!.descriptor];
    return rec.id;
  }

  private async run(
    instr: Extract<Instruction, { kind: 'run' }>,
    state: State,
    work: string,
    o: BuildOptions,
  ): Promise<boolean> {
    const cfg = state.doc.config;
    const argv = instr.form === 'exec' ? instr.args : [...(cfg.Shell ?? DEFAULT_SHELL), instr.command];
    const args = [...state.args].map(([k, v]) => `${k}=${v}`).sort();
    // build args in effect are part of the key, as Docker writes them into the history ("|N A=b …")
    const createdBy = `RUN ${args.length ? `|${args.length} ${args.join(' ')} ` : ''}${JSON.stringify(argv)}`;
    const key = `${state.imageId ?? 'scratch'}\n${createdBy}`;
    if (await this.reuse(key, state, o)) return true;
    if (!state.imageId) throw invalid('RUN needs an image with a shell: FROM scratch has none');
    const env = this.envOf(state);
    const runEnv = [...[...state.args].filter(([k]) => env[k] === undefined).map(([k, v]) => `${k}=${v}`)];
    const { record } = await this.containers.create({
      image: state.imageId,
      name: `tsswarm-build-${randomBytes(6).toString('hex')}`,
      entrypoint: argv[0]!,
      cmd: argv.slice(1),
      env: runEnv,
      ...(cfg.WorkingDir ? { workingDir: cfg.WorkingDir } : {}),
      ...(cfg.User ? { user: cfg.User } : {}),
      labels: { [BUILD_LABEL]: 'true' },
      healthcheck: { test: ['NONE'] },
    });
    o.out(` ---> Running in ${short(record.id)}\n`);
    const bundle = this.containers.bundle(record.id);
    try {
      // the working directory exists before the command runs (and is part of the layer); the
      // directories on the way keep the image's mode and owner
      const wd = cfg.WorkingDir;
      if (wd && wd !== '/') {
        const view = await this.mountImage(state.imageId, work);
        try {
          const wdRel = await resolveInRoot(view.dir, wd, true);
          if (!existsSync(path.join(view.dir, wdRel))) {
            await fs.mkdir(path.join(bundle, 'upper', wdRel), { recursive: true, mode: 0o755 });
            await mirrorParents(path.join(bundle, 'upper'), wdRel, view.dir, false);
          }
        } finally {
          await view.unmount();
        }
      }
      await this.containers.start(record.id);
      const cancel = () => void this.containers.kill(record.id).catch(() => undefined);
      o.signal?.addEventListener('abort', cancel, { once: true });
      if (o.signal?.aborted) cancel();
      const live = await openLiveLog(bundle);
      for (const e of await readLogs(bundle, {}, live)) o.out(e.line);
      await followLogs(
        bundle,
        (e) => o.out(e.line),
        () => record.state.status !== 'running',
        new AbortController().signal,
        live,
      );
      const st = await this.containers.wait(record.id);
      if (st.exitCode !== 0) {
        const shown = instr.form === 'exec' ? JSON.stringify(instr.args) : instr.command;
        throw invalid(`RUN ${shown} returned a non-zero code: ${st.exitCode ?? 'unknown'}`);
      }
      const blob = path.join(work, `layer-${randomBytes(6).toString('hex')}.tar.gz`);
      const layer = await writeLayerFromDir(path.join(bundle, 'upper'), blob, {
        exclude: (rel, st2) => PLACEHOLDERS.has(rel) && st2.isFile() && st2.size === 0,
      });
      state.imageId = await this.commit(
        state,
        { blob, digest: layer.digest, diffId: layer.diffId, size: layer.size },
        createdBy,
      );
    } finally {
      await this.containers.remove(record.id, { force: true }).catch(() => undefined);
    }
    await this.cache.put(key, state.imageId);
    o.out(` ---> ${short(state.imageId)}\n`);
    return false;
  }

  private async copy(
    instr: Extract<Instruction, { kind: 'copy' | 'add' }>,
    state: State,
    df: Dockerfile,
    ctx: { results: string[]; work: string; o: BuildOptions },
  ): Promise<boolean> {
    const what = instr.kind === 'copy' ? 'COPY' : 'ADD';
    const { o } = ctx;
    for (const s of instr.sources)
      if (/^[a-z][a-z0-9+.-]*:\/\//i.test(s) || s.startsWith('git@'))
        throw invalid(
          `${what} from a URL (${s}) is not supported: tsswarm builds have no network; put the file in the context`,
        );
    let root = o.context;
    let unmount: (() => Promise<void>) | undefined;
    const from = instr.kind === 'copy' ? instr.from : undefined;
    if (from !== undefined) {
      const si = findStage(df, from);
      let id: string;
      if (si !== undefined) {
        if (ctx.results[si] === undefined)
          throw invalid(`COPY --from=${from}: that stage is not built before this one`);
        id = ctx.results[si]!;
      } else id = (await this.fromImage(from, undefined, df, ctx.results, o)).imageId!;
      const mounted = await this.mountImage(id, ctx.work);
      root = mounted.dir;
      unmount = mounted.unmount;
    }
    try {
      const sources = (await Promise.all(instr.sources.map((s) => findSources(root, s, what)))).flat();
      const sum = await checksumSources(sources);
      const cfg = state.doc.config;
      const dest = path.posix.resolve(cfg.WorkingDir || '/', instr.dest);
      const createdBy = `${what}${from ? ` --from=${from}` : ''}${instr.chown ? ` --chown=${instr.chown}` : ''}${instr.chmod ? ` --chmod=${instr.chmod}` : ''} ${sum.slice(0, 16)} in ${dest}`;
      const key = `${state.imageId ?? 'scratch'}\n${createdBy}\n${sum}`;
      if (await this.reuse(key, state, o)) return true;
      const readImageFile = async (p: string) => {
        if (!state.imageId) return undefined;
        for (const l of this.store.layerDirs(state.imageId)) {
          const f = path.join(l, p);
          if (existsSync(f)) return fs.readFile(f, 'utf8').catch(() => undefined);
        }
        return undefined;
      };
      const owner = instr.chown ? await resolveChown(instr.chown, readImageFile) : { uid: 0, gid: 0 };
      let chmod: number | undefined;
      if (instr.chmod !== undefined) {
        if (!/^[0-7]{3,4}$/.test(instr.chmod))
          throw invalid(`invalid --chmod "${instr.chmod}": use octal, e.g. 755`);
        chmod = Number.parseInt(instr.chmod, 8);
      }
      // the destination as the image sees it: through its symlinks (/bin → usr/bin), never out of it
      const view = state.imageId ? await this.mountImage(state.imageId, ctx.work) : undefined;
      const stage = path.join(ctx.work, `copy-${randomBytes(6).toString('hex')}`);
      try {
        const destRel = view ? await resolveInRoot(view.dir, dest, true) : dest.replace(/^\/+/, '');
        const existingDir = view !== undefined && isDir(path.join(view.dir, destRel));
        const destIsDir =
          instr.dest.endsWith('/') || instr.dest === '.' || instr.dest.endsWith('/.') || existingDir;
        await fs.mkdir(stage, { mode: 0o755 });
        await placeSources(stage, sources, {
          dest: `/${destRel}`,
          destIsDir,
          owner,
          unpack: instr.kind === 'add',
          what,
          ...(chmod !== undefined ? { chmod } : {}),
        });
        // directories on the way keep the image's mode and owner (a COPY into /tmp keeps 1777)
        await mirrorParents(stage, destRel, view?.dir, existingDir);
      } finally {
        await view?.unmount();
      }
      const blob = path.join(ctx.work, `layer-${randomBytes(6).toString('hex')}.tar.gz`);
      const layer = await writeLayerFromDir(stage, blob);
      await fs.rm(stage, { recursive: true, force: true });
      state.imageId = await this.commit(
        state,
        { blob, digest: layer.digest, diffId: layer.diffId, size: layer.size },
        createdBy,
      );
      await this.cache.put(key, state.imageId);
      o.out(` ---> ${short(state.imageId)}\n`);
      return false;
    } finally {
      await unmount?.();
    }
  }

  /** A read-only view of an image's file system (its layers as overlayfs lower directories). */
  private async mountImage(id: string, work: string): Promise<{ dir: string; unmount: () => Promise<void> }> {
    const lowers = this.store.layerDirs(id);
    if (lowers.length === 0) {
      const empty = path.join(work, `empty-${randomBytes(4).toString('hex')}`);
      await fs.mkdir(empty);
      return { dir: empty, unmount: async () => undefined };
    }
    if (lowers.length === 1) return { dir: lowers[0]!, unmount: async () => undefined };
    const dir = path.join(work, `from-${randomBytes(4).toString('hex')}`);
    await fs.mkdir(dir);
    await exec('mount', ['-t', 'overlay', 'overlay', '-o', `ro,lowerdir=${lowers.join(':')}`, dir]);
    return {
      dir,
      unmount: async () => {
        await exec('umount', [dir]).catch(() => exec('umount', ['-l', dir]));
      },
    };
  }
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}
