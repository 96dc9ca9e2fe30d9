import { statSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/** Facts about this host the resource flags are checked against. */
export function hostInfo() {
  return {
    cpus: availableParallelism(),
    statDevice(path: string) {
      try {
        const st = statSync(path);
        const rdev = st.rdev;
        return {
          isBlock: st.isBlockDevice(),
          isChar: st.isCharacterDevice(),
          major: Number((BigInt(rdev) >> 8n) & 0xfffn),
          minor: Number((BigInt(rdev) & 0xffn) | ((BigInt(rdev) >> 12n) & 0xfff00n)),
        };
      } catch {
        return undefined;
      }
    },
  };
}
