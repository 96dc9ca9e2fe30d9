/**
 * Scheduler throughput: placements per second of `schedule()` on synthetic clusters of 1,000 and
 * 5,000 nodes (3 zones of unequal size, racks of 20, tier=app/db labels, a few managers, 4–64
 * CPUs, ~3% of nodes drained, paused or down, a third with a task already running) with 10,000
 * pending tasks over 20 services (constraints such as node.labels.tier==app and
 * node.role!=manager, spread over zone or zone→rack, some max-replicas-per-node and a host port).
 *
 *   node dist/bench/scheduler.js [--runs 5] [--warmup 5] [--tasks 10000] [--services 20]
 *
 * Each size is warmed up, then timed `--runs` times (a different seed each run); the median is
 * reported, with the ratio to the design's 50,000 placements/s target and to kube-scheduler's
 * 680–810 pods/s floor on 5,000 nodes — a reference figure from the design brief, not measured
 * here. The clock is read around `schedule()` alone (building the synthetic input is outside).
 * Prints numbers only; asserts nothing.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { syntheticCluster } from '../src/scheduler/fixtures.js';
import { type SchedulePlan, type Strategy, schedule } from '../src/scheduler/index.js';

const TARGET = 50_000;
const KUBE_FLOOR = [680, 810] as const;

function intArg(name: string, def: number): number {
  const argv = process.argv.slice(2);
  const i = argv.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (i < 0) return def;
  const a = argv[i]!;
  const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[i + 1];
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`--${name} needs a whole number ≥ 1, not "${v}"`);
    process.exit(2);
  }
  return n;
}

const RUNS = intArg('runs', 5);
const WARMUP = intArg('warmup', 5);
const TASKS = intArg('tasks', 10_000);
const SERVICES = intArg('services', 20);
const SIZES = [1_000, 5_000];

function fact(f: () => string): string {
  try {
    return f();
  } catch {
    return 'unknown';
  }
}

function header(): void {
  const cmd = ['node', ...process.argv.slice(1).map((a) => a.replace(`${process.cwd()}/`, ''))].join(' ');
  console.log('# scheduler placements per second (pure schedule(), synthetic clusters)');
  console.log(`command:  ${cmd}   (cwd ${process.cwd()})`);
  console.log(`date:     ${new Date().toISOString()}`);
  console.log(
    `nproc:    ${os.availableParallelism()}   cpu: ${os.cpus()[0]?.model ?? 'unknown'}   memory: ${Math.round(os.totalmem() / 2 ** 20)} MiB`,
  );
  console.log(`kernel:   ${fact(() => execFileSync('uname', ['-srm'], { encoding: 'utf8' }).trim())}`);
  console.log(
    `os:       ${fact(() => /^PRETTY_NAME="?([^"\n]*)"?/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? 'unknown')}`,
  );
  console.log(`node:     ${process.version}   (single thread: schedule() is synchronous)`);
  console.log(
    `load:     ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')} (1/5/15 min, before the runs)`,
  );
  console.log('');
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ');
  return [line(head), w.map((x) => '-'.repeat(x)).join('  '), ...rows.map(line)].join('\n');
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

interface Row {
  nodes: number;
  strategy: Strategy;
  ms: number[];
  perSecond: number[];
  plan: SchedulePlan;
}

function measure(nodes: number, strategy: Strategy): Row {
  const cluster = syntheticCluster(2024, nodes, TASKS, SERVICES);
  const snapshot = { nodes: cluster.nodes };
  for (let w = 0; w < WARMUP; w++) schedule(snapshot, cluster.pending, { seed: 1000 + w, strategy });
  const ms: number[] = [];
  const perSecond: number[] = [];
  let plan: SchedulePlan | undefined;
  for (let r = 0; r < RUNS; r++) {
    const t0 = process.hrtime.bigint();
    plan = schedule(snapshot, cluster.pending, { seed: r + 1, strategy });
    const elapsed = Number(process.hrtime.bigint() - t0) / 1e6;
    ms.push(elapsed);
    perSecond.push(plan.assignments.length / (elapsed / 1000));
  }
  return { nodes, strategy, ms, perSecond, plan: plan! };
}

function main(): void {
  header();
  console.log(
    `workload: ${TASKS.toLocaleString('en-US')} pending tasks over ${SERVICES} services; warmup ${WARMUP}, runs ${RUNS} (median reported)`,
  );
  console.log('');
  const rows: Row[] = [];
  for (const nodes of SIZES)
    for (const strategy of ['spread', 'binpack'] as const) rows.push(measure(nodes, strategy));
  console.log(
    table(
      [
        'nodes',
        'strategy',
        'placed',
        'unplaced',
        'median ms',
        'min ms',
        'max ms',
        'placements/s',
        'vs 50k target',
      ],
      rows.map((r) => [
        fmt(r.nodes),
        r.strategy,
        fmt(r.plan.assignments.length),
        fmt(r.plan.unplaced.length),
        median(r.ms).toFixed(1),
        Math.min(...r.ms).toFixed(1),
        Math.max(...r.ms).toFixed(1),
        fmt(median(r.perSecond)),
        `${(median(r.perSecond) / TARGET).toFixed(2)}×`,
      ]),
    ),
  );
  console.log('');
  console.log(
    'kube-scheduler reference: 680–810 pods/s on 5,000 nodes (figure from the design brief, NOT measured here)',
  );
  console.log(
    table(
      ['nodes', 'strategy', 'placements/s', 'vs 810/s', 'vs 680/s'],
      rows.map((r) => {
        const p = median(r.perSecond);
        return [
          fmt(r.nodes),
          r.strategy,
          fmt(p),
          `${(p / KUBE_FLOOR[1]).toFixed(0)}×`,
          `${(p / KUBE_FLOOR[0]).toFixed(0)}×`,
        ];
      }),
    ),
  );
  console.log('');
  for (const r of rows) {
    const reasons = new Map<string, number>();
    for (const u of r.plan.unplaced) reasons.set(u.summary, (reasons.get(u.summary) ?? 0) + 1);
    for (const [summary, count] of reasons) {
      console.log(`unplaced (${fmt(r.nodes)} nodes, ${r.strategy}): ${count} × ${summary}`);
    }
  }
}

main();
