import { existsSync, promises as fs } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TsswarmError } from '../api/errors.js';
import { BUILD_LABEL, Builder } from './build/builder.js';
import { detectCgroupDriver } from './cgroups/detect.js';
import type { CgroupDriver } from './cgroups/types.js';
import { ContainerManager } from './containers/manager.js';
import { ImageStore } from './images/store.js';
import { ImagePuller } from './registry/pull.js';
import type { RegistryOptions } from './registry/transport.js';

export interface EngineOptions {
  dataRoot: string;
  cgroupParent: string;
  shimPath?: string;
  log?: (msg: string) => void;
  /**
   * The host's side of task networking (src/network/node.ts). datapath false: swarm tasks get
   * loopback only and nothing of the host's network is touched. dnsUpstreams: where the
   * embedded DNS sends names outside the swarm (empty: answered NXDOMAIN).
   */
  network?: { datapath: boolean; dnsUpstreams: string[] };
  /** How registries are reached (CA certificates, plain-HTTP registries). */
  registry?: RegistryOptions;
}

export const DEFAULT_REGISTRY_CERTS = '/etc/tsswarm/certs.d';

/** Where the C helper is: $TSSWARM_SHIM, else build/tsswarm-shim in this package. */
export function defaultShimPath(): string {
  if (process.env.TSSWARM_SHIM) return process.env.TSSWARM_SHIM;
  // dist/src/engine/engine.js -> package root
  const pkgRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
  return join(pkgRoot, 'build', 'tsswarm-shim');
}

/** One host's container engine: images, containers and their cgroups. Knows nothing of clusters. */
export class Engine {
  readonly images: ImageStore;
  readonly puller: ImagePuller;
  readonly builder: Builder;
  readonly registry: RegistryOptions;
  readonly containers: ContainerManager;
  readonly cgroups: CgroupDriver;
  readonly shimPath: string;

  constructor(readonly opts: EngineOptions) {
    this.shimPath = opts.shimPath ?? defaultShimPath();
    this.cgroups = detectCgroupDriver();
    this.images = new ImageStore({ root: join(opts.dataRoot, 'images'), shimPath: this.shimPath });
    this.registry = opts.registry ?? { certsDir: DEFAULT_REGISTRY_CERTS };
    this.puller = new ImagePuller(this.images, this.registry);
    this.containers = new ContainerManager({
      dataRoot: opts.dataRoot,
      shimPath: this.shimPath,
      images: this.images,
      cgroups: this.cgroups,
      cgroupParent: opts.cgroupParent,
      log: opts.log,
    });
    this.builder = new Builder(this.images, this.containers, this.puller, join(opts.dataRoot, 'build'));
  }

  async init(): Promise<void> {
    if (!existsSync(this.shimPath)) {
      throw new TsswarmError(
        'precondition',
        `the container helper ${this.shimPath} is missing: run scripts/setup.sh (or npm run setup) first`,
      );
    }
    await fs.mkdir(this.opts.dataRoot, { recursive: true, mode: 0o711 });
    await this.images.init();
    await this.containers.init();
    // what an interrupted build left: its containers and work directories (the cache stays)
    for (const c of this.containers.list(true))
      if (c.config.labels[BUILD_LABEL])
        await this.containers.remove(c.id, { force: true }).catch(() => undefined);
    const buildRoot = join(this.opts.dataRoot, 'build');
    await fs.mkdir(buildRoot, { recursive: true });
    for (const e of await fs.readdir(buildRoot))
      if (e.startsWith('build-') || e.startsWith('ctx-'))
        await fs.rm(join(buildRoot, e), { recursive: true, force: true }).catch(() => undefined);
  }

  close(): void {
    this.containers.close();
  }
}
