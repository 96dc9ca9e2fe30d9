import { randomBytes } from 'node:crypto';
import { invalid } from '../../api/errors.js';

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

export function newContainerId(): string {
  return randomBytes(32).toString('hex');
}

/** Docker's rule for container names. */
export function validateName(name: string): string {
  const n = name.startsWith('/') ? name.slice(1) : name;
  if (!NAME_RE.test(n)) {
    throw invalid(`invalid container name "${name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
  }
  return n;
}

const LEFT = ['brave', 'calm', 'eager', 'fond', 'keen', 'lucid', 'proud', 'quiet', 'sharp', 'wise'];
const RIGHT = ['lovelace', 'hopper', 'turing', 'noether', 'curie', 'ritchie', 'thompson', 'liskov', 'knuth'];

/** A readable generated name such as keen_hopper, with a suffix when taken. */
export function generateName(taken: (n: string) => boolean): string {
  const pick = <T>(a: T[]) => a[randomBytes(1)[0]! % a.length]!;
  const base = `${pick(LEFT)}_${pick(RIGHT)}`;
  if (!taken(base)) return base;
  for (let i = 2; ; i++) if (!taken(`${base}${i}`)) return `${base}${i}`;
}
