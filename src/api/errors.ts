/**
 * Typed errors. Every error a user can cause carries a stable code, an HTTP status
 * and a CLI exit code; they are mapped once (the daemon's error handler and the CLI's
 * top level) and never shown as a stack trace.
 */
export type ErrorCode =
  | 'invalid_argument'
  | 'not_found'
  | 'conflict'
  | 'bad_archive'
  | 'unsupported'
  | 'daemon_unreachable'
  | 'precondition'
  | 'unauthorized'
  | 'registry_error'
  | 'command_not_found'
  | 'command_not_executable'
  | 'internal';

const statusOf: Record<ErrorCode, number> = {
  invalid_argument: 400,
  bad_archive: 400,
  not_found: 404,
  conflict: 409,
  precondition: 409,
  unauthorized: 401,
  registry_error: 502,
  unsupported: 501,
  command_not_found: 400,
  command_not_executable: 400,
  daemon_unreachable: 503,
  internal: 500,
};

/** Exit codes a script can rely on. 125 follows `docker run`'s "the daemon refused" convention. */
const exitOf: Record<ErrorCode, number> = {
  invalid_argument: 125,
  bad_archive: 125,
  not_found: 125,
  conflict: 125,
  precondition: 125,
  unauthorized: 125,
  registry_error: 125,
  unsupported: 125,
  command_not_found: 127,
  command_not_executable: 126,
  daemon_unreachable: 125,
  internal: 125,
};

export class TsswarmError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'TsswarmError';
  }
  get httpStatus(): number {
    return statusOf[this.code];
  }
  get exitCode(): number {
    return exitOf[this.code];
  }
  toJSON(): { code: ErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

export const invalid = (msg: string, cause?: unknown) => new TsswarmError('invalid_argument', msg, { cause });
export const notFound = (msg: string) => new TsswarmError('not_found', msg);
export const conflict = (msg: string) => new TsswarmError('conflict', msg);
export const badArchive = (msg: string, cause?: unknown) => new TsswarmError('bad_archive', msg, { cause });
export const precondition = (msg: string) => new TsswarmError('precondition', msg);
export const unauthorized = (msg: string) => new TsswarmError('unauthorized', msg);
export const registryError = (msg: string, cause?: unknown) =>
  new TsswarmError('registry_error', msg, { cause });

/** Rebuilds a typed error from its wire form (the daemon's JSON error body). */
export function fromWire(body: unknown, status: number): TsswarmError {
  const b = (body ?? {}) as { code?: string; message?: string };
  const code = (
    b.code && b.code in statusOf ? b.code : status >= 500 ? 'internal' : 'invalid_argument'
  ) as ErrorCode;
  return new TsswarmError(code, b.message ?? `daemon answered HTTP ${status}`);
}
