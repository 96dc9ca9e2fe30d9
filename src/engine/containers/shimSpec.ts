/**
 * Writes the spec files read by the C helper (src/engine/native/README.md):
 * one directive per line, `key value`, with C-style escapes in values.
 */
export type Directive = [key: string, ...values: Array<string | number>];

export function escapeValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/\t/g, '\\t');
}

export function renderSpec(directives: Directive[]): string {
  return directives
    .map(([key, ...values]) => `${key} ${values.map((v) => escapeValue(String(v))).join(' ')}\n`)
    .join('');
}

/** Docker's masked and read-only kernel paths. */
export const MASKED_PATHS = [
  '/proc/asound',
  '/proc/acpi',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
];
export const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];
