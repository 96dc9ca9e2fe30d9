/**
 * Property test: seeded random clusters and workloads; whatever the plan, no assignment may break
 * a filter, every task is answered exactly once, and a task left unplaced really fits nowhere once
 * the plan is applied. Checked independently of the scheduler's own counters.
 */
import t from 'tap';
import { matchConstraint, normalizeArch, parseConstraint } from './constraints.js';
import { CPU, GiB, makeNode, makeSpec, running } from './fixtures.js';
import { Prng } from './random.js';
import { schedule } from './schedule.js';
import type { HostPort, Node, PendingTask, RunningTask, Strategy, TaskSpec } from './types.js';

const CONSTRAINTS = [
  'node.labels.zone==a',
  'node.labels.zone!=b',
  'node.role==worker',
  'node.role!=manager',
  'node.platform.os==linux',
  'node.platform.arch==x86_64',
  'node.labels.rack!=r1',
  'node.labels.ssd==true',
];
const PORTS: HostPort[] = [
  { port: 80, protocol: 'tcp' },
  { port: 443, protocol: 'tcp' },
  { port: 53, protocol: 'udp' },
];

function world(seed: number) {
  const rng = new Prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[rng.below(xs.length)]!;
  const chance = (p: number) => rng.next() / 2 ** 32 < p;
  const nodes: Node[] = [];
  const count = rng.below(40);
  for (let k = 0; k < count; k++) {
    const cpu = (1 + rng.below(4)) * CPU;
    const mem = (1 + rng.below(4)) * GiB;
    const tasks: RunningTask[] = [];
    const used = new Set<HostPort>();
    for (let r = rng.below(4); r > 0; r--) {
      const port = pick(PORTS);
      const hostPorts = chance(0.3) && !used.has(port) ? [port] : [];
      for (const p of hostPorts) used.add(p);
      // sometimes more than the node has: overcommitted nodes must not take more
      tasks.push(
        running(
          `s${rng.below(6)}`,
          { nanoCpus: pick([0, 0.5, 1, 2]) * CPU, memoryBytes: pick([0, 0.5, 1]) * GiB },
          hostPorts,
        ),
      );
    }
    const labels: Record<string, string> = {};
    if (chance(0.8)) labels.zone = pick(['a', 'b', 'c']);
    if (chance(0.7)) labels.rack = pick(['r1', 'r2', 'r3', 'r4']);
    if (chance(0.3)) labels.ssd = 'true';
    nodes.push(
      makeNode(`n${k}`, {
        role: chance(0.2) ? 'manager' : 'worker',
        availability: chance(0.1) ? 'drain' : chance(0.1) ? 'pause' : 'active',
        status: chance(0.1) ? 'down' : chance(0.05) ? 'unknown' : 'ready',
        labels,
        platform: { os: chance(0.9) ? 'linux' : 'windows', arch: chance(0.8) ? 'x86_64' : 'aarch64' },
        resources: { nanoCpus: cpu, memoryBytes: mem },
        tasks,
      }),
    );
  }
  const specs = new Map<string, TaskSpec>();
  const pending: PendingTask[] = [];
  for (let s = 0; s < 8; s++) {
    const serviceId = `s${s}`;
    const constraints = CONSTRAINTS.filter(() => chance(0.15));
    const spec = makeSpec({
      reservations: { nanoCpus: pick([0, 0.25, 0.5, 1]) * CPU, memoryBytes: pick([0, 0.25, 0.5, 1]) * GiB },
      constraints,
      preferences: pick([
        [],
        [{ spread: 'node.labels.zone' }],
        [{ spread: 'node.labels.zone' }, { spread: 'node.labels.rack' }],
      ]),
      maxReplicasPerNode: pick([undefined, 0, 1, 2, 3]),
      hostPorts: chance(0.2) ? [pick(PORTS)] : [],
      platforms: chance(0.2)
        ? [
            pick([
              { os: 'linux', arch: 'amd64' },
              { os: 'linux', arch: 'arm64' },
              { os: '', arch: 'x86_64' },
            ]),
          ]
        : undefined,
    });
    specs.set(serviceId, spec);
    for (let k = rng.below(30); k > 0; k--)
      pending.push({ id: `${serviceId}.${k}`, serviceId, slot: k, spec });
  }
  const global = makeSpec({
    reservations: { nanoCpus: 0.25 * CPU, memoryBytes: 0 },
    hostPorts: chance(0.5) ? [PORTS[0]!] : [],
  });
  specs.set('global', global);
  for (const n of [...nodes.map((x) => x.id), 'missing']) {
    if (chance(0.5)) pending.push({ id: `global.${n}`, serviceId: 'global', nodeId: n, spec: global });
  }
  // shuffle so pinned and replicated tasks interleave
  for (let i = pending.length - 1; i > 0; i--) {
    const j = rng.below(i + 1);
    [pending[i], pending[j]] = [pending[j]!, pending[i]!];
  }
  return { nodes, pending, specs, strategy: pick<Strategy>(['spread', 'binpack']) };
}

const portKey = (p: HostPort) => `${p.protocol}/${p.port}`;

t.test('no assignment ever breaks a filter; unplaced tasks fit nowhere', async (t) => {
  let placed = 0;
  let refused = 0;
  for (let seed = 1; seed <= 300; seed++) {
    const { nodes, pending, specs, strategy } = world(seed);
    const plan = schedule({ nodes }, pending, { seed, strategy });
    t.same(schedule({ nodes }, pending, { seed, strategy }), plan);
    const byId = new Map(nodes.map((n) => [n.id, n]));
    const taskById = new Map(pending.map((p) => [p.id, p]));
    const answered = [...plan.assignments.map((a) => a.taskId), ...plan.unplaced.map((u) => u.taskId)];
    if (answered.length !== pending.length || new Set(answered).size !== pending.length) {
      t.fail(`seed ${seed}: every task answered exactly once`);
    }
    // the cluster once the plan is applied
    const after = new Map<string, RunningTask[]>(nodes.map((n) => [n.id, [...n.tasks]]));
    for (const a of plan.assignments) {
      const task = taskById.get(a.taskId)!;
      after.get(a.nodeId)!.push({
        serviceId: task.serviceId,
        reservations: task.spec.reservations,
        hostPorts: task.spec.hostPorts,
      });
    }
    const staticOk = (n: Node, spec: TaskSpec) =>
      n.status === 'ready' &&
      n.availability === 'active' &&
      spec.constraints.every((c) => matchConstraint(parseConstraint(c), n)) &&
      (!spec.platforms?.length ||
        spec.platforms.some(
          (p) =>
            (p.os === '' || p.os === n.platform.os) &&
            (p.arch === '' || normalizeArch(p.arch) === normalizeArch(n.platform.arch)),
        ));
    for (const a of plan.assignments) {
      const task = taskById.get(a.taskId)!;
      const n = byId.get(a.nodeId);
      if (!n) {
        t.fail(`seed ${seed}: ${a.taskId} on a node that does not exist`);
        continue;
      }
      if (task.nodeId !== undefined && task.nodeId !== n.id) t.fail(`seed ${seed}: pinned task moved`);
      if (!staticOk(n, task.spec))
        t.fail(`seed ${seed}: ${a.taskId} on ${n.id} breaks ready/constraints/platform`);
    }
    for (const n of nodes) {
      const mine = after.get(n.id)!.slice(n.tasks.length);
      if (mine.length === 0) continue;
      const sum = (xs: RunningTask[], k: 'nanoCpus' | 'memoryBytes') =>
        xs.reduce((s, x) => s + x.reservations[k], 0);
      for (const k of ['nanoCpus', 'memoryBytes'] as const) {
        const initialFree = n.resources[k] - sum(n.tasks, k);
        if (sum(mine, k) > Math.max(0, initialFree) + 1e-6) t.fail(`seed ${seed}: ${n.id} over its ${k}`);
      }
      const ports = after.get(n.id)!.flatMap((x) => x.hostPorts.map(portKey));
      if (new Set(ports).size !== ports.length) t.fail(`seed ${seed}: host port used twice on ${n.id}`);
      for (const [serviceId, spec] of specs) {
        const max = spec.maxReplicasPerNode ?? 0;
        const added = mine.filter((x) => x.serviceId === serviceId).length;
        const total = after.get(n.id)!.filter((x) => x.serviceId === serviceId).length;
        if (max > 0 && added > 0 && total > max)
          t.fail(`seed ${seed}: ${serviceId} over max replicas on ${n.id}`);
      }
    }
    // a refused task fits nowhere in the final state
    for (const u of plan.unplaced) {
      const task = taskById.get(u.taskId)!;
      if (!u.summary.startsWith('no suitable node (')) t.fail(`seed ${seed}: summary ${u.summary}`);
      if (u.summary !== `no suitable node (${u.reasons.join('; ')})`)
        t.fail(`seed ${seed}: summary and reasons differ`);
      const candidates = task.nodeId !== undefined ? nodes.filter((n) => n.id === task.nodeId) : nodes;
      for (const n of candidates) {
        const here = after.get(n.id)!;
        const spec = task.spec;
        const free = (k: 'nanoCpus' | 'memoryBytes') =>
          n.resources[k] - here.reduce((s, x) => s + x.reservations[k], 0);
        const resourcesOk =
          (spec.reservations.nanoCpus === 0 && spec.reservations.memoryBytes === 0) ||
          (spec.reservations.nanoCpus <= free('nanoCpus') &&
            spec.reservations.memoryBytes <= free('memoryBytes'));
        const used = new Set(here.flatMap((x) => x.hostPorts.map(portKey)));
        const portsOk = spec.hostPorts.every((p) => !used.has(portKey(p)));
        const max = spec.maxReplicasPerNode ?? 0;
        const maxOk = max === 0 || here.filter((x) => x.serviceId === task.serviceId).length < max;
        if (staticOk(n, spec) && resourcesOk && portsOk && maxOk)
          t.fail(`seed ${seed}: ${u.taskId} would fit on ${n.id}`);
      }
    }
    // spread: a service with no dynamic filter, no preference and nothing running is even over its nodes
    for (const [serviceId, spec] of specs) {
      if (strategy !== 'spread' || serviceId === 'global' || spec.preferences.length > 0) continue;
      if (
        spec.reservations.nanoCpus ||
        spec.reservations.memoryBytes ||
        spec.hostPorts.length ||
        spec.maxReplicasPerNode
      )
        continue;
      if (nodes.some((n) => n.tasks.some((x) => x.serviceId === serviceId))) continue;
      const counts = nodes
        .filter((n) => staticOk(n, spec))
        .map((n) => after.get(n.id)!.filter((x) => x.serviceId === serviceId).length);
      if (counts.length > 0 && Math.max(...counts) - Math.min(...counts) > 1)
        t.fail(`seed ${seed}: ${serviceId} uneven`);
    }
    placed += plan.assignments.length;
    refused += plan.unplaced.length;
  }
  t.ok(placed > 1000 && refused > 100, `exercised both outcomes: ${placed} placed, ${refused} unplaced`);
});
