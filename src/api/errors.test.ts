import t from 'tap';
import { fromWire, invalid, TsswarmError } from './errors.js';

t.test('typed errors carry code, status and exit code', async (t) => {
  const e = invalid('bad size "10X"');
  t.equal(e.code, 'invalid_argument');
  t.equal(e.httpStatus, 400);
  t.equal(e.exitCode, 125);
  t.same(e.toJSON(), { code: 'invalid_argument', message: 'bad size "10X"' });
});

t.test('wire errors round-trip', async (t) => {
  const e = fromWire({ code: 'not_found', message: 'no such image: x' }, 404);
  t.ok(e instanceof TsswarmError);
  t.equal(e.code, 'not_found');
  t.equal(fromWire({}, 502).code, 'internal');
});
