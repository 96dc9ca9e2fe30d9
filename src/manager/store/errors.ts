import { TsswarmError } from '../../api/errors.js';
import type { Kind } from './types.js';

/** A `conflict` naming the key whose version did not match (expected 0: it had to be absent). */
export class StoreConflict extends TsswarmError {
  constructor(
    readonly kind: Kind,
    readonly id: string,
    readonly expectedVersion: number,
    readonly actualVersion: number,
  ) {
    super(
      'conflict',
      expectedVersion === 0
        ? `${kind}/${id} already exists (version ${actualVersion})`
        : `${kind}/${id} was changed by someone else (expected version ${expectedVersion}, found ${actualVersion}): re-read and retry`,
    );
    this.name = 'StoreConflict';
  }
}

export function isConflict(e: unknown): e is TsswarmError {
  return e instanceof TsswarmError && e.code === 'conflict';
}
