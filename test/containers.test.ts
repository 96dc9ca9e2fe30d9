import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { encodeFrame, Frame, FrameDecoder } from '../src/api/frames.js';
import { loadTestImages } from './lib/fixtures.js';
import { startTestDaemon } from './lib/harness.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('container lifecycle through the CLI', async (t) => {
  const d = await startTestDaemon(t);
  await loadTestImages(d);

  await t.test('run in the foreground prints output and propagates the exit code', async (t) => {
    const ok = await d.cli(['container', 'run', '--rm', 'busybox:test', 'echo', 'hello world']);
    t.equal(ok.stdout, 'hello world\n');
    t.equal(ok.code, 0, ok.stderr);
    const fail = await d.cli([
      'container',
      'run',
      '--rm',
      'busybox:test',
      'sh',
      '-c',
      'echo oops >&2; exit 3',
    ]);
    t.equal(fail.code, 3);
    t.equal(fail.stderr, 'oops\n');
    const ps = await d.cli(['container', 'ps', '-a', '-q']);
    t.equal(ps.stdout, '', '--rm removed both containers');
  });

  await t.test('-e, -w, -u, --hostname and --entrypoint', async (t) => {
    const r = await d.cli([
      'container',
      'run',
      '--rm',
      '-e',
      'GREETING=hi there',
      '-w',
      '/tmp/work',
      '-u',
      'app',
      '--hostname',
      'box1',
      'busybox:test',
      'sh',
      '-c',
      'echo "$GREETING|$(pwd)|$(id -u):$(id -g)|$(hostname)|$HOSTNAME"',
    ]);
    t.equal(r.stdout, 'hi there|/tmp/work|1000:1000|box1|box1\n', r.stderr);
    const ep = await d.cli([
      'container',
      'run',
      '--rm',
      '--entrypoint',
      'echo',
      'busybox:test',
      'from',
      'entrypoint',
    ]);
    t.equal(ep.stdout, 'from entrypoint\n');
    const uid = await d.cli(['container', 'run', '--rm', '-u', '1234:5678', 'busybox:test', 'id']);
    t.match(uid.stdout, /uid=1234 gid=5678/);
    const missing = await d.cli(['container', 'run', '--rm', 'busybox:test', 'no-such-binary']);
    t.equal(missing.code, 127, 'a missing executable is exit code 127, as docker');
    t.match(missing.stderr, /executable file not found/);
  });

  await t.test('ENTRYPOINT and CMD from the image config, exec and shell form', async (t) => {
    const exec = await d.cli(['container', 'run', '--rm', 'entry:test']);
    t.equal(exec.stdout, 'entry default-cmd\n');
    const replaced = await d.cli(['container', 'run', '--rm', 'entry:test', 'given', 'args']);
    t.equal(replaced.stdout, 'entry given args\n');
    const shell = await d.cli(['container', 'run', '--rm', 'shellform:test']);
    t.equal(shell.stdout, 'shell form ran\n', 'CMD does not reach a shell-form ENTRYPOINT');
  });

  await t.test('detached run, ps, inspect, stop with the stop signal', async (t) => {
    const run = await d.cli([
      'container',
      'run',
      '-d',
      '--name',
      'graceful',
      'busybox:test',
      'sh',
      '-c',
      'trap "echo got TERM; exit 0" TERM; echo ready; while true; do sleep 0.1; done',
    ]);
    t.equal(run.code, 0, run.stderr);
    t.match(run.stdout, /^[0-9a-f]{64}\n$/);
    const ps = await d.cli(['container', 'ps', '--format', 'json']);
    const list = JSON.parse(ps.stdout) as Array<{ Name: string; State: { Running: boolean; Pid: number } }>;
    const c = list.find((x) => x.Name === 'graceful');
    t.ok(c?.State.Running, 'listed as running');
    t.ok(c && c.State.Pid > 1, 'has a host pid');
    await sleep(300);
    const stop = await d.cli(['container', 'stop', 'graceful']);
    t.equal(stop.code, 0, stop.stderr);
    const logs = await d.cli(['container', 'logs', 'graceful']);
    t.equal(logs.stdout, 'ready\ngot TERM\n');
    const insp = JSON.parse((await d.cli(['container', 'inspect', 'graceful'])).stdout)[0];
    t.equal(insp.State.Status, 'exited');
    t.equal(insp.State.ExitCode, 0, 'the trap ran: exit 0, not killed');
  });

  await t.test('stop kills after the grace period when the signal is ignored', async (t) => {
    await d.cli([
      'container',
      'run',
      '-d',
      '--name',
      'stubborn',
      'busybox:test',
      'sh',
      '-c',
      'trap "" TERM; while true; do sleep 0.1; done',
    ]);
    await sleep(200);
    const t0 = Date.now();
    const stop = await d.cli(['container', 'stop', '-t', '1', 'stubborn']);
    const took = Date.now() - t0;
    t.equal(stop.code, 0);
    t.ok(took >= 900, `waited the grace period (${took} ms)`);
    const insp = JSON.parse((await d.cli(['container', 'inspect', 'stubborn'])).stdout)[0];
    t.equal(insp.State.ExitCode, 137, 'SIGKILL after the grace period');
  });

  await t.test('create, start, restart, kill, rm', async (t) => {
    const create = await d.cli([
      'container',
      'create',
      '--name',
      'cycle',
      'busybox:test',
      'sh',
      '-c',
      'echo started; sleep 100',
    ]);
    t.equal(create.code, 0, create.stderr);
    let insp = JSON.parse((await d.cli(['container', 'inspect', 'cycle'])).stdout)[0];
    t.equal(insp.State.Status, 'created');
    t.equal((await d.cli(['container', 'start', 'cycle'])).code, 0);
    const firstPid = JSON.parse((await d.cli(['container', 'inspect', 'cycle'])).stdout)[0].State.Pid;
    t.equal((await d.cli(['container', 'restart', '-t', '1', 'cycle'])).code, 0);
    insp = JSON.parse((await d.cli(['container', 'inspect', 'cycle'])).stdout)[0];
    t.equal(insp.State.Status, 'running');
    t.not(insp.State.Pid, firstPid, 'a new process after restart');
    t.equal(insp.State.RestartCount, 1);
    const rmRunning = await d.cli(['container', 'rm', 'cycle']);
    t.not(rmRunning.code, 0, 'a running container is not removed without --force');
    t.match(rmRunning.stderr, /stop it first, or use --force/);
    t.equal((await d.cli(['container', 'kill', 'cycle'])).code, 0);
    insp = JSON.parse((await d.cli(['container', 'inspect', 'cycle'])).stdout)[0];
    t.equal(insp.State.ExitCode, 137);
    await sleep(100);
    const logs = await d.cli(['container', 'logs', 'cycle']);
    t.equal(logs.stdout, 'started\nstarted\n', 'both runs logged');
    t.equal((await d.cli(['container', 'rm', 'cycle'])).code, 0);
    const gone = await d.cli(['container', 'inspect', 'cycle']);
    t.not(gone.code, 0);
    t.match(gone.stderr, /no such container: cycle/);
  });

  await t.test('logs: --tail, --since, --timestamps, --follow, rotation', async (t) => {
    await d.cli([
      'container',
      'run',
      '--name',
      'counter',
      'busybox:test',
      'sh',
      '-c',
      'for i in 1 2 3 4 5; do echo line$i; done',
    ]);
    t.equal((await d.cli(['container', 'logs', '--tail', '2', 'counter'])).stdout, 'line4\nline5\n');
    const ts = await d.cli(['container', 'logs', '-t', '--tail', '1', 'counter']);
    t.match(ts.stdout, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z line5\n$/);
    t.equal((await d.cli(['container', 'logs', '--since', '1h', 'counter'])).stdout.split('\n').length, 6);
    const future = new Date(Date.now() + 60_000).toISOString();
    t.equal((await d.cli(['container', 'logs', '--since', future, 'counter'])).stdout, '');
    const bad = await d.cli(['container', 'logs', '--since', 'yesterday-ish', 'counter']);
    t.not(bad.code, 0);
    t.match(bad.stderr, /invalid --since/);

    await d.cli([
      'container',
      'run',
      '-d',
      '--name',
      'ticker',
      'busybox:test',
      'sh',
      '-c',
      'for i in 1 2 3; do echo tick$i; sleep 0.3; done',
    ]);
    const follow = await d.cli(['container', 'logs', '-f', 'ticker']);
    t.equal(follow.stdout, 'tick1\ntick2\ntick3\n', 'follow streams until the container exits');

    await d.cli([
      'container',
      'run',
      '--name',
      'chatty',
      '--log-opt',
      'max-size=2k',
      '--log-opt',
      'max-file=2',
      'busybox:test',
      'sh',
      '-c',
      'i=0; while [ $i -lt 400 ]; do echo "message number $i"; i=$((i+1)); done',
    ]);
    const ids = JSON.parse((await d.cli(['container', 'inspect', 'chatty'])).stdout)[0].Id as string;
    const files = (await fs.readdir(join(d.dataRoot, 'containers', ids))).filter((f) =>
      f.startsWith('container.log'),
    );
    t.same(files.sort(), ['container.log', 'container.log.1'], 'rotated, keeping max-file files');
    for (const f of files) {
      const st = await fs.stat(join(d.dataRoot, 'containers', ids, f));
      t.ok(st.size <= 2048 + 200, `${f} is about max-size (${st.size})`);
    }
    const tail = await d.cli(['container', 'logs', '--tail', '1', 'chatty']);
    t.equal(tail.stdout, 'message number 399\n', 'the newest lines survive rotation');
  });

  await t.test('exec runs a new process inside the container', async (t) => {
    await d.cli([
      'container',
      'run',
      '-d',
      '--name',
      'target',
      '--hostname',
      'exectarget',
      'busybox:test',
      'sleep',
      '300',
    ]);
    const ps = await d.cli(['container', 'exec', 'target', 'ps', '-o', 'pid,comm']);
    t.equal(ps.code, 0, ps.stderr);
    t.match(ps.stdout, /^\s*1 sleep$/m, 'sees the container PID 1');
    const host = await d.cli(['container', 'exec', 'target', 'hostname']);
    t.equal(host.stdout, 'exectarget\n');
    const code = await d.cli(['container', 'exec', 'target', 'sh', '-c', 'exit 7']);
    t.equal(code.code, 7, 'exit code propagated');
    const env = await d.cli([
      'container',
      'exec',
      '-e',
      'X=42',
      '-w',
      '/etc',
      'target',
      'sh',
      '-c',
      'echo $X $(pwd)',
    ]);
    t.equal(env.stdout, '42 /etc\n');
    const tty = await d.cli(['container', 'exec', '-t', 'target', 'tty']);
    t.match(tty.stdout, /^\/dev\/pts\/\d+\s*$/, '-t gives the process a terminal');
    const input = await d.cli(['container', 'exec', '-i', 'target', 'sh', '-c', 'read x; echo "got $x"'], {
      input: 'abc\n',
    });
    t.equal(input.stdout, 'got abc\n');
    const stdinTty = await d.cli(
      ['container', 'exec', '-i', '-t', 'target', 'sh', '-c', 'read x; echo "tty got $x"'],
      { input: 'xyz\n' },
    );
    t.match(stdinTty.stdout, /tty got xyz/);
    const missing = await d.cli(['container', 'exec', 'target', 'nope']);
    t.equal(missing.code, 127);
    await d.cli(['container', 'stop', '-t', '0', 'target']);
    const stopped = await d.cli(['container', 'exec', 'target', 'true']);
    t.not(stopped.code, 0);
    t.match(stopped.stderr, /is not running/);
  });

  await t.test('attach talks to the main process; the detach keys leave it running', async (t) => {
    await d.cli([
      'container',
      'run',
      '-d',
      '-i',
      '--name',
      'echoer',
      'busybox:test',
      'sh',
      '-c',
      'while read l; do echo "echo:$l"; done',
    ]);
    const sock = await d.client.upgrade('/containers/echoer/attach');
    const dec = new FrameDecoder();
    let out = '';
    sock.on('data', (c: Buffer) => {
      for (const f of dec.push(c)) if (f.type === Frame.stdout) out += f.payload.toString();
    });
    sock.write(encodeFrame(Frame.stdin, 'ping\n'));
    for (let i = 0; i < 50 && !out.includes('echo:ping'); i++) await sleep(50);
    t.equal(out, 'echo:ping\n');
    sock.destroy();
    const detach = await d.cli(['container', 'attach', 'echoer'], { input: Buffer.from('hello\n\x10\x11') });
    t.equal(detach.code, 0, detach.stderr);
    t.match(detach.stderr, /read escape sequence/);
    const insp = JSON.parse((await d.cli(['container', 'inspect', 'echoer'])).stdout)[0];
    t.equal(insp.State.Status, 'running', 'detaching does not stop the container');
    const logs = await d.cli(['container', 'logs', 'echoer']);
    t.equal(logs.stdout, 'echo:ping\necho:hello\n');
    await d.cli(['container', 'rm', '-f', 'echoer']);
  });

  await t.test('stats come from the cgroup', async (t) => {
    await d.cli([
      'container',
      'run',
      '-d',
      '--name',
      'busy',
      '-m',
      '64m',
      'busybox:test',
      'sh',
      '-c',
      'while true; do :; done',
    ]);
    const r = await d.cli(['container', 'stats', '--no-stream', '--format', 'json', 'busy']);
    t.equal(r.code, 0, r.stderr);
    const [s] = JSON.parse(r.stdout);
    t.ok(s.cpuPercent > 20, `a busy loop uses CPU (${s.cpuPercent}%)`);
    t.ok(s.memoryUsage > 0, 'memory usage');
    t.equal(s.memoryLimit, 64 * 1024 * 1024, 'memory limit');
    t.equal(s.pidsCurrent, 1);
    const table = await d.cli(['container', 'stats', '--no-stream', 'busy']);
    t.match(table.stdout, /CPU %\s+MEM USAGE \/ LIMIT/);
    t.match(table.stdout, /busy\s+\d+\.\d\d%\s+\S+ \/ 64\.0MiB/);
    const stream = await d.client.stream('GET', '/containers/busy/stats', { query: { stream: 1 } });
    const samples: Array<{ cpuUsageNs: number }> = [];
    let buf = '';
    for await (const chunk of stream) {
      buf += chunk;
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const l of lines) samples.push(JSON.parse(l));
      if (samples.length >= 2) break;
    }
    stream.destroy();
    t.equal(samples.length, 2, 'streaming stats send a sample a second');
    t.ok(samples[1]!.cpuUsageNs > samples[0]!.cpuUsageNs, 'CPU time grows between samples');
    await d.cli(['container', 'rm', '-f', 'busy']);
  });

  await t.test('after removal nothing of the containers is left', async (t) => {
    const all = JSON.parse((await d.cli(['container', 'ps', '-a', '--format', 'json'])).stdout) as Array<{
      Name: string;
    }>;
    for (const c of all) await d.cli(['container', 'rm', '-f', c.Name]);
    t.same(await d.leftovers(), []);
  });
});

t.test('a restarted daemon re-adopts running containers with their logs and exit codes', async (t) => {
  const d = await startTestDaemon(t);
  await loadTestImages(d);
  await d.cli([
    'container',
    'run',
    '-d',
    '--name',
    'survivor',
    'busybox:test',
    'sh',
    '-c',
    'trap "exit 42" TERM; echo before; while true; do sleep 0.1; done',
  ]);
  await d.cli([
    'container',
    'run',
    '-d',
    '--name',
    'short',
    'busybox:test',
    'sh',
    '-c',
    'sleep 1; echo done; exit 5',
  ]);
  const pid = JSON.parse((await d.cli(['container', 'inspect', 'survivor'])).stdout)[0].State.Pid as number;
  await sleep(200);
  await d.kill('SIGKILL');
  t.doesNotThrow(() => process.kill(pid, 0), 'the container outlives its daemon');
  await sleep(1500); // "short" exits while no daemon runs
  await d.restart();
  const survivor = JSON.parse((await d.cli(['container', 'inspect', 'survivor'])).stdout)[0];
  t.equal(survivor.State.Status, 'running');
  t.equal(survivor.State.Pid, pid, 'the same process, re-adopted');
  const short = JSON.parse((await d.cli(['container', 'inspect', 'short'])).stdout)[0];
  t.equal(short.State.Status, 'exited');
  t.equal(short.State.ExitCode, 5, 'the exit code recorded while the daemon was down');
  t.equal((await d.cli(['container', 'logs', 'short'])).stdout, 'done\n');
  t.equal((await d.cli(['container', 'stop', 'survivor'])).code, 0);
  const after = JSON.parse((await d.cli(['container', 'inspect', 'survivor'])).stdout)[0];
  t.equal(after.State.ExitCode, 42, 'the re-adopted container is stopped with its signal');
  t.equal((await d.cli(['container', 'logs', 'survivor'])).stdout, 'before\n');
});
