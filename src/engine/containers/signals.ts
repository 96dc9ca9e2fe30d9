import { constants } from 'node:os';
import { invalid } from '../../api/errors.js';

/** Signal by name (SIGTERM, TERM, term) or number, as Docker's --signal and STOPSIGNAL accept. */
export function signalNumber(sig: string | number): number {
  if (typeof sig === 'number' || /^\d+$/.test(sig)) {
    const n = Number(sig);
    if (n < 1 || n > 64) throw invalid(`invalid signal: ${sig}`);
    return n;
  }
  const name = sig.toUpperCase().startsWith('SIG') ? sig.toUpperCase() : `SIG${sig.toUpperCase()}`;
  const n = (constants.signals as Record<string, number>)[name];
  if (n === undefined) throw invalid(`invalid signal: ${sig}`);
  return n;
}
