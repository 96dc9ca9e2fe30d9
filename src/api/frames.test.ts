import t from 'tap';
import { encodeFrame, exitFrame, Frame, FrameDecoder, resizeFrame } from './frames.js';

t.test('frames survive arbitrary chunking', async (t) => {
  const wire = Buffer.concat([
    encodeFrame(Frame.stdout, 'hello\n'),
    encodeFrame(Frame.stderr, ''),
    resizeFrame(24, 80),
    exitFrame(137),
  ]);
  const d = new FrameDecoder();
  const got: Array<{ type: number; payload: Buffer }> = [];
  for (let i = 0; i < wire.length; i += 3) got.push(...d.push(wire.subarray(i, i + 3)));
  t.equal(got.length, 4);
  t.equal(got[0]?.payload.toString(), 'hello\n');
  t.equal(got[1]?.payload.length, 0);
  t.equal(got[2]?.payload.readUInt16BE(0), 24);
  t.equal(got[2]?.payload.readUInt16BE(2), 80);
  t.equal(got[3]?.type, Frame.exit);
  t.equal(got[3]?.payload.readInt32BE(0), 137);
});
