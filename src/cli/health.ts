/** Docker's `--health-*` flags, shared by `container run|create` and `service create`. */
import type { Command } from 'commander';
import { invalid } from '../api/errors.js';
import type { HealthcheckRequest } from '../engine/containers/health.js';
import { parseDuration } from '../manager/stack/units.js';

export function addHealthOptions(cmd: Command): Command {
  return cmd
    .option('--health-cmd <command>', 'command run in the container to check its health (through /bin/sh -c)')
    .option('--health-interval <duration>', 'time between checks, e.g. 30s (default 30s)')
    .option('--health-timeout <duration>', 'how long a check may run (default 30s)')
    .option('--health-retries <n>', 'failures in a row that make it unhealthy (default 3)')
    .option('--health-start-period <duration>', 'time to start in, when failures do not count (default 0s)')
    .option('--health-start-interval <duration>', 'time between checks during the start period (default 5s)')
    .option('--no-healthcheck', "disable the image's healthcheck");
}

/** The flags as a healthcheck request (undefined: none given, the image's applies). */
export function healthFromFlags(o: Record<string, unknown>): HealthcheckRequest | undefined {
  const given = [
    'healthCmd',
    'healthInterval',
    'healthTimeout',
    'healthRetries',
    'healthStartPeriod',
    'healthStartInterval',
  ].filter((k) => o[k] !== undefined);
  if (o.healthcheck === false) {
    if (given.length) throw invalid('--no-healthcheck conflicts with the --health-* options');
    return { test: ['NONE'] };
  }
  if (!given.length) return undefined;
  const duration = (flag: string, v: unknown) => {
    if (v === undefined) return undefined;
    const r = parseDuration(String(v));
    if (!r.ok) throw invalid(`--${flag} ${r.error}`);
    return r.value;
  };
  let retries: number | undefined;
  if (o.healthRetries !== undefined) {
    if (!/^[1-9]\d*$/.test(String(o.healthRetries)))
      throw invalid(`--health-retries must be a whole number ≥ 1, not "${o.healthRetries}"`);
    retries = Number(o.healthRetries);
  }
  const req: HealthcheckRequest = {
    ...(o.healthCmd !== undefined ? { test: ['CMD-SHELL', String(o.healthCmd)] } : {}),
    ...(retries !== undefined ? { retries } : {}),
  };
  for (const [key, flag] of [
    ['intervalMs', 'health-interval'],
    ['timeoutMs', 'health-timeout'],
    ['startPeriodMs', 'health-start-period'],
    ['startIntervalMs', 'health-start-interval'],
  ] as const) {
    const camel = flag.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
    const ms = duration(flag, o[camel]);
    if (ms !== undefined) req[key] = ms;
  }
  return req;
}
