import type { PortSpec } from './types.js';
import type { Parsed } from './units.js';

/**
 * Short port syntax `[HOST_IP:][PUBLISHED[-END]:]TARGET[-END][/PROTOCOL]`; ranges expand to one
 * PortSpec per port (mode ingress). Also `service create --publish`'s short form.
 */
export function parseShortPort(spec: string): Parsed<{ hostIp?: string; ports: PortSpec[] }> {
  const fail = (error: string) => ({ ok: false as const, error });
  let s = spec;
  let protocol = 'tcp';
  const slash = s.lastIndexOf('/');
  if (slash >= 0) {
    protocol = s.slice(slash + 1).toLowerCase();
    s = s.slice(0, slash);
  }
  if (!['tcp', 'udp', 'sctp'].includes(protocol)) return fail('protocol must be tcp, udp or sctp');
  let hostIp: string | undefined;
  if (s.startsWith('[')) {
    const close = s.indexOf(']:');
    if (close < 0) return fail('expected [IPv6]:PUBLISHED:TARGET');
    hostIp = s.slice(1, close);
    s = s.slice(close + 2);
  }
  const parts = s.split(':');
  if (parts.length === 3 && hostIp === undefined) hostIp = parts.shift();
  if (parts.length > 2) return fail('expected [HOST_IP:][PUBLISHED:]TARGET[/PROTOCOL]');
  const range = (r: string): [number, number] | undefined => {
    const m = /^(\d+)(?:-(\d+))?$/.exec(r);
    if (!m) return undefined;
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    return a >= 1 && b <= 65535 && a <= b ? [a, b] : undefined;
  };
  const target = range(parts[parts.length - 1]!);
  if (!target) return fail('the target port must be a number (or range) between 1 and 65535');
  const pubText = parts.length === 2 ? parts[0]! : '';
  const published = pubText === '' ? undefined : range(pubText);
  if (pubText !== '' && !published)
    return fail('the published port must be a number (or range) between 1 and 65535');
  const count = target[1] - target[0] + 1;
  if (published && published[1] - published[0] + 1 !== count)
    return fail('the published and target ranges must have the same size');
  const ports: PortSpec[] = [];
  const proto = protocol as PortSpec['protocol'];
  for (let k = 0; k < count; k++) {
    ports.push(
      published
        ? { target: target[0] + k, published: published[0] + k, protocol: proto, mode: 'ingress' }
        : { target: target[0] + k, protocol: proto, mode: 'ingress' },
    );
  }
  return { ok: true, value: { hostIp: hostIp || undefined, ports } };
}
