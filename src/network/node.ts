/**
 * One node's side of the networks (DESIGN.md §6, §7): follows the network view its manager
 * sends (view.ts) and keeps the host's datapath, the tasks' VIP rules and the embedded DNS in
 * step with it.
 *
 * - A task with attachments gets a named network namespace `<prefix>-<task id>` (in
 *   /run/netns) before its container is created: one veth per attachment, the first network's
 *   gateway as default route and nameserver. Its container joins that namespace.
 * - Every network a local task is on exists on the host (bridge, VXLAN device, rules), its
 *   VXLAN device knows every peer on other hosts; a network with no local task left is removed.
 * - Each local task's namespace holds the DNAT rules of the VIPs of its networks (vip.ts),
 *   rewritten when backends change.
 * - The DNS server listens on the gateway of every local network.
 * - `release` (the container ended) removes the task's namespace and with it its veths; a
 *   restarted daemon removes the namespaces of tasks it no longer runs (`reconcile`).
 *
 * All changes to the host run one at a time, in order.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { TaskRecord } from '../api/cluster.js';
import type { EngineOptions } from '../engine/engine.js';
import { type Exec, OverlayDatapath, type OverlayNetwork } from './datapath.js';
import { EmbeddedDns } from './dns.js';
import { PORTS_CHAIN, PORTS_HOST_CHAIN, PORTS_OUT_CHAIN, RULE_PRIORITY, renderPortRules } from './ingress.js';
import { vethName } from './links.js';
import { type NetView, resolveName, type ViewNetwork, vipsFor } from './view.js';
import { renderVipRules } from './vip.js';

export interface NodeNetworkOptions {
  exec: Exec;
  /** This node's address: its VXLAN endpoint. */
  vtep: string;
  /** Names of the tasks' network namespaces start with `<prefix>-`. */
  prefix: string;
  /** Where VIP rule files are written. */
  stateDir: string;
  /** Upstream resolvers for names outside the swarm (none: NXDOMAIN). */
  upstreams?: string[];
  log?: (m: string) => void;
}

/** What a task's container is created with. */
export interface TaskNetwork {
  netns: string;
  dns: string[];
  extraHosts: Array<[string, string]>;
}

/** How long a task waits for its manager's view to include its networks. */
const VIEW_WAIT_MS = 10_000;

const toDatapath = (n: ViewNetwork, ingress = false): OverlayNetwork => ({
  vni: n.vni,
  driver: n.driver,
  subnet: n.subnet,
  gateway: n.gateway,
  internal: n.internal,
  ...(ingress ? { ingress } : {}),
});

export class NodeNetwork {
  private view: NetView = { networks: [], attachments: [], ports: [] };
  private readonly datapath: OverlayDatapath;
  readonly dns: EmbeddedDns;
  private queue: Promise<void> = Promise.resolve();
  /** Networks set up on this host, by VNI, with what they were set up as. */
  private readonly present = new Map<number, { net: OverlayNetwork; key: string }>();
  /** Tasks with a namespace here: their network ids and the VIP rules last loaded. */
  private readonly tasks = new Map<string, { networkIds: string[]; rules?: string }>();
  private readonly waiters = new Set<() => void>();
  /** The published ports' rules and routes last loaded. */
  private portsKey?: string;
  private readonly log: (m: string) => void;

  constructor(private readonly opts: NodeNetworkOptions) {
    this.datapath = new OverlayDatapath(opts.exec, opts.vtep);
    this.log = opts.log ?? (() => {});
    this.dns = new EmbeddedDns(
      (client, name) => resolveName(this.view, client, name),
      opts.upstreams,
      this.log,
    );
  }

  netnsName(taskId: string): string {
    return `${this.opts.prefix}-${taskId.slice(0, 12)}`;
  }

  /** A new view from the manager: the host follows it. */
  setView(view: NetView): void {
    this.view = view;
    for (const w of this.waiters) w();
    this.enqueue(() => this.apply());
  }

  /**
   * Removes the namespaces of tasks not in `keep` (a restarted daemon's leftovers: their veths
   * go with them) and adopts those in it.
   */
  async reconcile(keep: ReadonlyMap<string, readonly string[]>): Promise<void> {
    await this.serial(async () => {
      const names = await fs.readdir('/run/netns').catch(() => [] as string[]);
      const byName = new Map([...keep].map(([id, nets]) => [this.netnsName(id), { id, nets }]));
      for (const name of names) {
        // exactly <prefix>-<12 hex>: never another daemon's (or a test host's) namespace
        if (
          !name.startsWith(`${this.opts.prefix}-`) ||
          !/^[0-9a-f]{12}$/.test(name.slice(this.opts.prefix.length + 1))
        )
          continue;
        const t = byName.get(name);
        if (t) this.tasks.set(t.id, { networkIds: [...t.nets] });
        else {
          this.log(`network: removing the namespace ${name} of a task no longer here`);
          await this.opts.exec(['ip', 'netns', 'del', name]).catch(() => {});
        }
      }
    });
  }

  /** Sets up the task's namespace and attachments; undefined when it has none. */
  async prepare(task: TaskRecord): Promise<TaskNetwork | undefined> {
    const atts = task.attachments ?? [];
    if (!atts.length) return undefined;
    const nets = await this.networksOf(atts.map((a) => a.networkId));
    return this.serial(async () => {
      const name = this.netnsName(task.id);
      await this.opts.exec(['ip', 'netns', 'del', name]).catch(() => {}); // a half-done earlier try
      await this.opts.exec(['ip', 'netns', 'add', name]);
      this.tasks.set(task.id, { networkIds: nets.map((n) => n.id) });
      try {
        for (const [i, n] of nets.entries()) {
          await this.ensure(n);
          await this.datapath.attach(
            { name },
            {
              network: toDatapath(n),
              hostIf: vethName(task.id, i),
              containerIf: `eth${i}`,
              address: atts[i]!.address,
              defaultRoute: i === 0,
            },
          );
        }
        await this.loadVipRules(task.id);
      } catch (e) {
        await this.dropTask(task.id);
        throw e;
      }
      const first = nets[0]!;
      const addr = atts[0]!.address.split('/')[0]!;
      return {
        netns: `/run/netns/${name}`,
        dns: [first.gateway],
        extraHosts: [[addr, task.container.hostname ?? task.id.slice(0, 12)]] as Array<[string, string]>,
      };
    });
  }

  /** The task's container has ended: its namespace (and veths) go. */
  async release(taskId: string): Promise<void> {
    if (!this.tasks.has(taskId)) return;
    await this.serial(() => this.dropTask(taskId));
    this.enqueue(() => this.apply());
  }

  close(): void {
    this.dns.close();
  }

  /** The node leaves the swarm: every task namespace, network, port rule and route of it goes. */
  async teardown(): Promise<void> {
    await this.serial(async () => {
      for (const id of [...this.tasks.keys()]) await this.dropTask(id);
      this.view = { networks: [], attachments: [], ports: [] };
      await this.datapath.removeOthers(new Set());
      this.present.clear();
      await this.loadPortRules(); // empty chains, and no policy routes left
    });
    this.dns.close();
  }

  private async dropTask(taskId: string): Promise<void> {
    this.tasks.delete(taskId);
    await this.opts.exec(['ip', 'netns', 'del', this.netnsName(taskId)]).catch(() => {});
    await fs.rm(this.rulesPath(taskId), { force: true });
  }

  /** Waits (bounded) until the view has these networks. */
  private async networksOf(ids: string[]): Promise<ViewNetwork[]> {
    const find = () => ids.map((id) => this.view.networks.find((n) => n.id === id));
    const deadline = Date.now() + VIEW_WAIT_MS;
    let nets = find();
    while (nets.some((n) => !n) && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, 200);
        const self = this;
        function done() {
          clearTimeout(timer);
          self.waiters.delete(done);
          resolve();
        }
        this.waiters.add(done);
      });
      nets = find();
    }
    const missing = ids.filter((_, i) => !nets[i]);
    if (missing.length) throw new Error(`the network ${missing.join(', ')} is not known on this node`);
    return nets as ViewNetwork[];
  }

  /** The network exists on this host as the view has it. */
  private async ensure(n: ViewNetwork): Promise<void> {
    const net = toDatapath(n, this.view.ingress?.network.id === n.id);
    const key = JSON.stringify(net);
    if (this.present.get(n.vni)?.key !== key) {
      await this.datapath.ensureNetwork(net);
      this.present.set(n.vni, { net, key });
    }
    if (n.driver === 'overlay') await this.datapath.setPeers(n.vni, n.peers);
  }

  private async apply(): Promise<void> {
    const inUse = new Set([...this.tasks.values()].flatMap((t) => t.networkIds));
    const local = this.view.networks.filter((n) => inUse.has(n.id));
    for (const n of local) await this.ensure(n);
    if (this.view.ingress) await this.ensure(this.view.ingress.network);
    const keep = new Set(
      [...local, ...(this.view.ingress ? [this.view.ingress.network] : [])].map((n) => n.vni),
    );
    // every other network on the host goes: no longer used, or left by an earlier run
    const removed = await this.datapath.removeOthers(keep);
    for (const vni of removed) this.present.delete(vni);
    if (removed.length) this.log(`network: removed the networks ${removed.join(', ')} (VNI) from this host`);
    for (const id of this.tasks.keys()) await this.loadVipRules(id);
    await this.loadPortRules();
    await this.dns.listen(local.map((n) => n.gateway));
  }

  /** Published ports: the TSSWARM-PORTS chains and the policy routes of the routing mesh. */
  private async loadPortRules(): Promise<void> {
    const { rules, routes } = renderPortRules(this.view);
    const key = JSON.stringify({ rules, routes });
    if (key === this.portsKey) return;
    const file = join(this.opts.stateDir, 'ports.rules');
    await fs.mkdir(this.opts.stateDir, { recursive: true });
    await fs.writeFile(file, rules);
    await this.opts.exec(['iptables-restore', '--noflush', file]);
    const jumps: Array<[string, string, string]> = [
      ['nat', 'PREROUTING', PORTS_CHAIN],
      ['nat', 'OUTPUT', PORTS_HOST_CHAIN],
      ['mangle', 'PREROUTING', PORTS_CHAIN],
      ['mangle', 'POSTROUTING', PORTS_OUT_CHAIN],
    ];
    for (const [table, from, to] of jumps) {
      const has = await this.opts.exec(['iptables', '-w', '-t', table, '-C', from, '-j', to]).then(
        () => true,
        () => false,
      );
      if (!has) await this.opts.exec(['iptables', '-w', '-t', table, '-I', from, '-j', to]);
    }
    const rulesNow = JSON.parse((await this.opts.exec(['ip', '-j', 'rule', 'show'])) || '[]') as Array<{
      priority: number;
      fwmark?: string;
    }>;
    const want = new Set(routes.map((r) => r.mark));
    for (const r of rulesNow) {
      if (r.priority !== RULE_PRIORITY || !r.fwmark) continue;
      const mark = Number(r.fwmark);
      if (want.has(mark)) continue;
      await this.opts
        .exec(['ip', 'rule', 'del', 'priority', String(RULE_PRIORITY), 'fwmark', r.fwmark])
        .catch(() => {});
      await this.opts.exec(['ip', 'route', 'flush', 'table', String(mark)]).catch(() => {});
    }
    const have = new Set(
      rulesNow.filter((r) => r.priority === RULE_PRIORITY && r.fwmark).map((r) => Number(r.fwmark)),
    );
    for (const r of routes) {
      const table = String(r.mark);
      await this.opts.exec([
        'ip',
        'route',
        'replace',
        'default',
        'via',
        r.via,
        'dev',
        r.dev,
        'onlink',
        'table',
        table,
      ]);
      if (!have.has(r.mark))
        await this.opts.exec([
          'ip',
          'rule',
          'add',
          'priority',
          String(RULE_PRIORITY),
          'fwmark',
          `0x${r.mark.toString(16)}`,
          'lookup',
          table,
        ]);
    }
    this.portsKey = key;
  }

  private rulesPath(taskId: string): string {
    return join(this.opts.stateDir, `${taskId}.rules`);
  }

  /** Loads the task's VIP rules into its namespace when they changed. */
  private async loadVipRules(taskId: string): Promise<void> {
    const t = this.tasks.get(taskId);
    if (!t) return;
    const rules = renderVipRules(vipsFor(this.view, t.networkIds));
    if (rules === t.rules) return;
    await fs.mkdir(this.opts.stateDir, { recursive: true });
    await fs.writeFile(this.rulesPath(taskId), rules);
    await this.opts.exec([
      'ip',
      'netns',
      'exec',
      this.netnsName(taskId),
      'iptables-restore',
      this.rulesPath(taskId),
    ]);
    t.rules = rules;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.queue.then(fn);
    this.queue = p.then(
      () => {},
      () => {},
    );
    return p;
  }

  private enqueue(fn: () => Promise<void>): void {
    void this.serial(fn).catch((e) => this.log(`network: ${(e as Error).message}`));
  }
}

/** Runs argv on this host; rejects with the command and its stderr. */
export const hostExec: Exec = (argv) =>
  new Promise((resolve, reject) => {
    const child = execFile(
      argv[0]!,
      argv.slice(1),
      { timeout: 30_000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${argv.join(' ')}: ${String(stderr).trim() || err.message}`));
        else resolve(String(stdout));
      },
    );
    child.stdin?.end(); // nothing is read from us
  });

/** The node's network side for an engine, or undefined when its datapath is off. */
export function nodeNetworkFor(
  engine: EngineOptions,
  vtep: string,
  log?: (m: string) => void,
): NodeNetwork | undefined {
  const net = engine.network ?? { datapath: true, dnsUpstreams: [] };
  if (!net.datapath) return undefined;
  return new NodeNetwork({
    exec: hostExec,
    vtep,
    prefix: engine.cgroupParent,
    stateDir: join(engine.dataRoot, 'net'),
    upstreams: net.dnsUpstreams,
    ...(log ? { log } : {}),
  });
}
