import t from 'tap';
import { ago, humanBytes, table } from './render.js';

t.test('table aligns columns', async (t) => {
  t.equal(
    table(
      ['A', 'LONGER'],
      [
        ['xyz', '1'],
        ['q', '22'],
      ],
    ),
    'A     LONGER\nxyz   1\nq     22\n',
  );
});

t.test('human sizes and ages', async (t) => {
  t.equal(humanBytes(512), '512B');
  t.equal(humanBytes(10 * 1024 * 1024), '10.0MiB');
  t.equal(humanBytes(1536), '1.50KiB');
  t.equal(ago(new Date(1_000_000).toISOString(), 1_000_000 + 125_000), '2 minutes ago');
  t.equal(ago(new Date(0).toISOString(), 1000), '1 second ago');
});
