/**
 * Container healthchecks, as Docker runs them: a probe command executed inside the running
 * container every interval (every start interval during the start period), with a timeout.
 * One success makes it `healthy`; `retries` failures in a row make it `unhealthy`; failures
 * during the start period do not count while it is still `starting`. The state machine is
 * pure (`nextHealth`); `HealthMonitor` runs the probes of one container.
 */
import { invalid } from '../../api/errors.js';
import type { ImageHealthcheck } from '../images/types.js';

/** What a client may ask for (`--health-*` flags, a stack's healthcheck); unset: the image's. */
export interface HealthcheckRequest {
  /** ['NONE'] disables the image's check; ['CMD', ...argv]; ['CMD-SHELL', script]. */
  test?: string[];
  intervalMs?: number;
  timeoutMs?: number;
  startPeriodMs?: number;
  startIntervalMs?: number;
  retries?: number;
}

/** A resolved healthcheck, as the container runs it. */
export interface HealthConfig {
  test: string[];
  intervalMs: number;
  timeoutMs: number;
  startPeriodMs: number;
  startIntervalMs: number;
  retries: number;
}

export type HealthStatus = 'starting' | 'healthy' | 'unhealthy';

export interface HealthProbe {
  start: string;
  end: string;
  exitCode: number;
  output: string;
}

export interface HealthState {
  status: HealthStatus;
  failingStreak: number;
  /** The last probes, oldest first (at most 5, as Docker keeps). */
  log: HealthProbe[];
}

/** Docker's defaults. */
export const HEALTH_DEFAULTS = {
  intervalMs: 30_000,
  timeoutMs: 30_000,
  startPeriodMs: 0,
  startIntervalMs: 5_000,
  retries: 3,
} as const;

const LOG_KEEP = 5;
/** A probe's output kept in the log (Docker keeps 4 KiB). */
export const OUTPUT_KEEP = 4096;

const nsToMs = (ns: number | undefined) => (ns ? Math.round(ns / 1e6) : undefined);

/** The container's healthcheck: the request over the image's, or none. */
export function resolveHealthcheck(
  image: ImageHealthcheck | undefined,
  req: HealthcheckRequest | undefined,
): HealthConfig | undefined {
  const test = req?.test?.length ? req.test : image?.Test;
  if (!test || test.length === 0 || test[0] === 'NONE') return undefined;
  const kind = test[0];
  if (kind !== 'CMD' && kind !== 'CMD-SHELL')
    throw invalid(`invalid healthcheck test ${JSON.stringify(test)}: it starts with CMD, CMD-SHELL or NONE`);
  if (test.length < 2 || !test[1])
    throw invalid(`invalid healthcheck test ${JSON.stringify(test)}: no command`);
  const pick = (
    key: keyof HealthcheckRequest & keyof typeof HEALTH_DEFAULTS,
    fromImage: number | undefined,
  ) => {
    const v = (req?.[key] as number | undefined) || fromImage || HEALTH_DEFAULTS[key];
    if (!Number.isFinite(v) || v < 0) throw invalid(`invalid healthcheck ${key} ${v}`);
    return v;
  };
  const cfg: HealthConfig = {
    test,
    intervalMs: pick('intervalMs', nsToMs(image?.Interval)),
    timeoutMs: pick('timeoutMs', nsToMs(image?.Timeout)),
    startPeriodMs: req?.startPeriodMs ?? nsToMs(image?.StartPeriod) ?? HEALTH_DEFAULTS.startPeriodMs,
    startIntervalMs: pick('startIntervalMs', nsToMs(image?.StartInterval)),
    retries: pick('retries', image?.Retries),
  };
  for (const k of ['intervalMs', 'timeoutMs', 'startIntervalMs'] as const)
    if (cfg[k] < 1) throw invalid(`healthcheck ${k.replace('Ms', '')} must be at least 1ms`);
  if (!Number.isInteger(cfg.retries) || cfg.retries < 1)
    throw invalid(`healthcheck retries must be a whole number ≥ 1 (got ${cfg.retries})`);
  return cfg;
}

/** The argv a probe runs: CMD's own, or CMD-SHELL's script through /bin/sh -c. */
export function probeArgv(test: string[]): string[] {
  return test[0] === 'CMD-SHELL' ? ['/bin/sh', '-c', test.slice(1).join(' ')] : test.slice(1);
}

export const initialHealth = (): HealthState => ({ status: 'starting', failingStreak: 0, log: [] });

/** The state after one probe. */
export function nextHealth(
  state: HealthState,
  probe: HealthProbe,
  opts: { retries: number; inStartPeriod: boolean },
): HealthState {
  const log = [...state.log, probe].slice(-LOG_KEEP);
  if (probe.exitCode === 0) return { status: 'healthy', failingStreak: 0, log };
  // during the start period a failure does not count, until the container was healthy once
  if (opts.inStartPeriod && state.status === 'starting') return { ...state, log };
  const failingStreak = state.failingStreak + 1;
  return {
    status: failingStreak >= opts.retries ? 'unhealthy' : state.status,
    failingStreak,
    log,
  };
}

/** Runs one probe inside the container: exit code (-1 on timeout) and output. */
export type Prober = (argv: string[], timeoutMs: number) => Promise<{ exitCode: number; output: string }>;

/** Runs the probes of one running container until stopped; reports every change of status. */
export class HealthMonitor {
  private timer?: NodeJS.Timeout;
  private stopped = false;
  state: HealthState = initialHealth();
  /** Called after every probe (the log changes), with or without a change of status. */
  onProbe?: (state: HealthState) => void;

  constructor(
    private readonly cfg: HealthConfig,
    private readonly startedAt: number,
    private readonly probe: Prober,
    private readonly onChange: (state: HealthState) => void,
  ) {}

  start(): void {
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private inStartPeriod(now: number): boolean {
    return now - this.startedAt < this.cfg.startPeriodMs;
  }

  private schedule(): void {
    if (this.stopped) return;
    const starting = this.state.status === 'starting' && this.inStartPeriod(Date.now());
    const wait = starting ? this.cfg.startIntervalMs : this.cfg.intervalMs;
    this.timer = setTimeout(() => void this.run(), wait);
  }

  private async run(): Promise<void> {
    if (this.stopped) return;
    const start = new Date();
    let result: { exitCode: number; output: string };
    try {
      result = await this.probe(probeArgv(this.cfg.test), this.cfg.timeoutMs);
    } catch (e) {
      result = { exitCode: -1, output: (e as Error).message };
    }
    if (this.stopped) return;
    const probe: HealthProbe = {
      start: start.toISOString(),
      end: new Date().toISOString(),
      exitCode: result.exitCode,
      output: result.output.slice(0, OUTPUT_KEEP),
    };
    const before = this.state.status;
    this.state = nextHealth(this.state, probe, {
      retries: this.cfg.retries,
      inStartPeriod: this.inStartPeriod(start.getTime()),
    });
    this.onProbe?.(this.state);
    if (this.state.status !== before) this.onChange(this.state);
    this.schedule();
  }
}
