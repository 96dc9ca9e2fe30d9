/**
 * Overlay throughput: TCP between two "containers" (network namespaces) on two simulated hosts
 * over tsswarm's VXLAN overlay (src/network/datapath.ts), against the peer — plain veth between
 * the same two hosts (their underlay, the path the VXLAN packets take) — with iperf3 from
 * Debian, run side by side: the two paths alternate, `--runs` times each (default 5) for
 * `--seconds` each (default 5), and the medians are compared.
 *
 *   node dist/bench/overlay.js [--runs 5] [--seconds 5]
 *
 * Target (the issue): overlay ≥ 90% of veth. Everything is named tsswarm-test-ovl-<hex> and
 * removed at the end, pass or fail or Ctrl-C. Prints numbers; asserts nothing.
 */
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { OverlayDatapath, type OverlayNetwork } from '../src/network/datapath.js';
import { vethName } from '../src/network/links.js';
import { execOn, startHosts } from '../test/lib/hosts.js';
import { type Cleanup, hostsBench, intArg, printHeader, runBench, sleep, summarize, table } from './lib.js';

const run = promisify(execFile);
const RUNS = intArg('runs', 5);
const SECONDS = intArg('seconds', 5);
const NET: OverlayNetwork = { vni: 7001, subnet: '10.77.0.0/24', gateway: '10.77.0.1' };

/** Gbit/s of one iperf3 client run inside netns `from` (argv prefix) against `to`. */
async function iperf(prefix: string[], to: string): Promise<number> {
  const { stdout } = await run(
    prefix[0]!,
    [...prefix.slice(1), 'iperf3', '-c', to, '-t', String(SECONDS), '-J'],
    { maxBuffer: 16 << 20, timeout: (SECONDS + 30) * 1000 },
  );
  const r = JSON.parse(stdout) as { end: { sum_received: { bits_per_second: number } } };
  return r.end.sum_received.bits_per_second / 1e9;
}

async function bench(cleanup: Cleanup): Promise<number> {
  const { prefix, t } = hostsBench(cleanup, 'ovl');
  printHeader(
    `overlay throughput: VXLAN between two hosts vs plain veth (iperf3, ${RUNS} × ${SECONDS} s each)`,
    prefix,
  );
  const hosts = await startHosts(t, { count: 2, prefix });
  const containers: string[] = [];
  cleanup.add('containers', async () => {
    for (const c of containers) await run('ip', ['netns', 'del', c]).catch(() => {});
  });
  const ips = ['10.77.0.2', '10.77.0.3'];
  for (const i of [1, 2]) {
    const dp = new OverlayDatapath(execOn(hosts, i), hosts.address(i));
    await dp.ensureNetwork(NET);
    const name = `${prefix}-c${i}`;
    await run('ip', ['netns', 'add', name]);
    containers.push(name);
    await dp.attach(
      { name },
      {
        network: NET,
        hostIf: vethName(`0000000${i}`, 0),
        containerIf: 'eth0',
        address: `${ips[i - 1]}/24`,
        defaultRoute: true,
      },
    );
    await dp.setPeers(
      NET.vni,
      ips.map((address, k) => ({ address, vtep: hosts.address(k + 1) })),
    );
  }
  // iperf3 servers, in the foreground, stopped by PID: one in container 2 (overlay), one in host 2 (underlay)
  for (const [ns, ip] of [
    [`${prefix}-c2`, ips[1]!],
    [hosts.host(2).netns, hosts.address(2)],
  ] as const) {
    const server = spawn('ip', ['netns', 'exec', ns, 'iperf3', '-s', '-B', ip], { stdio: 'ignore' });
    cleanup.add(`iperf3 server in ${ns}`, async () => {
      if (server.exitCode !== null || server.signalCode !== null) return;
      const exited = new Promise((r) => server.once('exit', r));
      server.kill('SIGKILL');
      await exited;
    });
  }
  await sleep(500);
  const overlay: number[] = [];
  const veth: number[] = [];
  for (let k = 0; k < RUNS && !cleanup.interrupted; k++) {
    overlay.push(await iperf(['ip', 'netns', 'exec', `${prefix}-c1`], ips[1]!));
    veth.push(await iperf(['ip', 'netns', 'exec', hosts.host(1).netns], hosts.address(2)));
  }
  const row = (name: string, v: number[]) => {
    const s = summarize(v);
    return [name, String(s.n), s.median.toFixed(2), s.min.toFixed(2), s.max.toFixed(2)];
  };
  console.log(
    table(
      ['path (Gbit/s)', 'n', 'median', 'min', 'max'],
      [row('overlay: VXLAN, container to container', overlay), row('peer: plain veth, host to host', veth)],
    ),
  );
  const ratio = summarize(overlay).median / summarize(veth).median;
  console.log('');
  console.log(
    `ratio:    overlay / veth = ${(ratio * 100).toFixed(1)}%   (target ≥ 90%: ${ratio >= 0.9 ? 'met' : 'MISSED'})`,
  );
  console.log('mtu:      underlay 1500, overlay 1450 (VXLAN adds 50 bytes)');
  return 0;
}

runBench(bench);
