import t from 'tap';
import { TsswarmError } from '../../api/errors.js';
import { createClusterCA } from './ca.js';
import { caDigest, formatJoinToken, newJoinToken, parseJoinToken, verifyJoinToken } from './token.js';

const now = new Date('2030-01-01T00:00:00Z');

t.test('tokens round-trip and admit the right role', async (t) => {
  const ca = await createClusterCA({ clusterId: 'c1', now });
  const worker = newJoinToken('worker', ca.certPem);
  const manager = newJoinToken('manager', ca.certPem);
  t.match(worker.token, /^SWMTKN-1-[0-9a-z]{50}-[0-9a-z]{25}$/);
  t.not(worker.secret, manager.secret);
  t.same(parseJoinToken(worker.token), { caDigest: caDigest(ca.certPem), secret: worker.secret });
  t.equal(parseJoinToken(`  ${worker.token}\n`).secret, worker.secret, 'pasted whitespace is ignored');
  const secrets = { caCertPem: ca.certPem, workerSecret: worker.secret, managerSecret: manager.secret };
  t.equal(verifyJoinToken(worker.token, secrets), 'worker');
  t.equal(verifyJoinToken(manager.token, secrets), 'manager');
  // whole tokens stored instead of secrets work too
  t.equal(verifyJoinToken(manager.token, { ...secrets, managerSecret: manager.token }), 'manager');
});

t.test('a deterministic rng gives a deterministic token', async (t) => {
  const ca = await createClusterCA({ clusterId: 'c1', now });
  const zero = newJoinToken('worker', ca.certPem, (n) => new Uint8Array(n));
  t.equal(zero.secret, '0'.repeat(25));
  const max = newJoinToken('worker', ca.certPem, (n) => new Uint8Array(n).fill(255));
  t.equal(max.secret, (2n ** 128n - 1n).toString(36).padStart(25, '0'));
  t.equal(max.secret.length, 25);
  t.throws(() => newJoinToken('worker', ca.certPem, () => new Uint8Array(3)), /random source/);
  t.throws(() => newJoinToken('admin' as 'worker', ca.certPem), /role must be/);
});

t.test('malformed tokens: each has its own error, none repeats the token', async (t) => {
  const ca = await createClusterCA({ clusterId: 'c1', now });
  const good = newJoinToken('worker', ca.certPem);
  const d = caDigest(ca.certPem);
  const s = good.secret;
  const cases: [string, RegExp][] = [
    ['', /join token is empty/],
    ['   ', /join token is empty/],
    [`XWMTKN-1-${d}-${s}`, /must start with "SWMTKN-"/],
    [`SWMTKN-1-${d}`, /4 parts, got 3/],
    [`SWMTKN-1-${d}-${s}-extra`, /4 parts, got 5/],
    [`SWMTKN-2-${d}-${s}`, /unsupported version "2"/],
    [`SWMTKN-1-${d.slice(1)}-${s}`, /CA digest must be 50 characters.*got 49/],
    [`SWMTKN-1-${d.toUpperCase()}-${s}`, /CA digest must be 50 characters of \[0-9a-z\]/],
    [`SWMTKN-1-${d}-${s}0`, /secret must be 25 characters.*got 26/],
    [`SWMTKN-1-${d}-${s.slice(0, 24)}!`, /secret must be 25 characters of \[0-9a-z\]/],
  ];
  for (const [tok, re] of cases) {
    const err = t.throws(() => parseJoinToken(tok), re, JSON.stringify(tok)) as unknown;
    t.ok(err instanceof TsswarmError && err.code === 'invalid_argument');
    t.notMatch((err as Error).message, s, 'the secret is not echoed');
  }
  t.throws(() => parseJoinToken(undefined as unknown as string), /empty/);
});

t.test('wrong cluster, wrong secret, rotation', async (t) => {
  const ca = await createClusterCA({ clusterId: 'c1', now });
  const other = await createClusterCA({ clusterId: 'c1', now }); // same name, other key
  const worker = newJoinToken('worker', ca.certPem);
  const manager = newJoinToken('manager', ca.certPem);
  const secrets = { caCertPem: ca.certPem, workerSecret: worker.secret, managerSecret: manager.secret };

  const foreign = newJoinToken('worker', other.certPem);
  t.throws(() => verifyJoinToken(foreign.token, secrets), {
    message: 'the join token was made for another cluster',
  });
  // the right secret under another cluster's digest is still refused
  t.throws(
    () => verifyJoinToken(formatJoinToken(caDigest(other.certPem), worker.secret), secrets),
    /another cluster/,
  );

  const guessed = formatJoinToken(caDigest(ca.certPem), 'z'.repeat(25));
  t.throws(() => verifyJoinToken(guessed, secrets), /not valid for this cluster/);

  // rotating the worker token: the old one is refused, the new one and the manager token still work
  const rotated = newJoinToken('worker', ca.certPem);
  const after = { ...secrets, workerSecret: rotated.secret };
  t.throws(() => verifyJoinToken(worker.token, after), /may have been rotated/);
  t.equal(verifyJoinToken(rotated.token, after), 'worker');
  t.equal(verifyJoinToken(manager.token, after), 'manager');
  // a worker token never grants the manager role
  t.not(verifyJoinToken(rotated.token, after), 'manager');
});
