import t from 'tap';
import { coalesce } from './remoteLink.js';

t.test('a batch keeps the latest status of each task, and a container id once known', async (t) => {
  const at = (state: string, ts: number) => ({ state, timestamp: ts }) as never;
  const out = coalesce([
    { taskId: 'a', status: at('accepted', 1) },
    { taskId: 'b', status: at('accepted', 2) },
    { taskId: 'a', status: at('ready', 3), containerId: 'c1' },
    { taskId: 'a', status: at('running', 4) },
  ]);
  t.same(out, [
    { taskId: 'a', status: at('running', 4), containerId: 'c1' },
    { taskId: 'b', status: at('accepted', 2) },
  ]);
  t.same(coalesce([]), []);
});
