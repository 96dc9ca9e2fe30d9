/**
 * The embedded DNS resolver of a host (DESIGN.md §7): UDP on port 53 of each local network's
 * gateway address, which is the nameserver of the containers on that network. A query is
 * answered from the node's network view for the task that sent it (its source address), so a
 * container resolves the services of every network it is on and of no other. Names outside
 * the swarm go to the upstream resolvers when there are any (--dns-upstream), else get
 * NXDOMAIN. Answers carry TTL 0: a rescheduled task's new address is used at once.
 */
import { createSocket, type Socket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import * as packet from 'dns-packet';
import { invalid } from '../api/errors.js';
import { parseIp } from './ipam.js';

/** Resolves a name for a client: addresses, [] (known, nothing running) or undefined (unknown). */
export type Resolver = (client: string, qname: string) => string[] | undefined;

const MAX_ANSWERS = 32;
const RCODE = { NOERROR: 0, FORMERR: 1, NXDOMAIN: 3 } as const;
const UPSTREAM_TIMEOUT_MS = 2_000;

export class EmbeddedDns {
  private readonly sockets = new Map<string, Socket>();

  constructor(
    private readonly resolve: Resolver,
    /** Upstream resolvers (IP addresses, port 53) for names outside the swarm; none: NXDOMAIN. */
    private readonly upstreams: readonly string[] = [],
    private readonly log: (m: string) => void = () => {},
    private readonly port = 53,
  ) {}

  /** Listens on exactly these addresses (binding new ones, closing the others). */
  async listen(addresses: readonly string[]): Promise<void> {
    for (const [addr, s] of this.sockets) {
      if (addresses.includes(addr)) continue;
      s.close();
      this.sockets.delete(addr);
    }
    for (const addr of addresses) {
      if (this.sockets.has(addr)) continue;
      const s = createSocket({ type: 'udp4', reuseAddr: true });
      s.on('message', (msg, rinfo) => {
        this.answer(msg, rinfo.address)
          .then((out) => out && s.send(out, rinfo.port, rinfo.address))
          .catch((e) => this.log(`dns: ${(e as Error).message}`));
      });
      try {
        await new Promise<void>((res, rej) => {
          s.once('error', rej);
          s.bind(this.port, addr, () => {
            s.off('error', rej);
            res();
          });
        });
        s.on('error', (e) => this.log(`dns ${addr}: ${e.message}`));
        this.sockets.set(addr, s);
      } catch (e) {
        s.close();
        this.log(`dns: cannot listen on ${addr}:${this.port}: ${(e as Error).message}`);
      }
    }
  }

  get addresses(): string[] {
    return [...this.sockets.keys()];
  }

  close(): void {
    for (const s of this.sockets.values()) s.close();
    this.sockets.clear();
  }

  /** The reply to one query datagram (undefined: nothing to send). */
  async answer(msg: Buffer, client: string): Promise<Buffer | undefined> {
    let q: packet.Packet;
    try {
      q = packet.decode(msg);
    } catch {
      return undefined; // not DNS: no reply
    }
    const question = q.questions?.[0];
    // the response code is the low 4 bits of the flags
    const reply = (rcode: keyof typeof RCODE, answers: packet.Answer[] = []) =>
      packet.encode({
        id: q.id,
        type: 'response',
        flags:
          packet.RECURSION_DESIRED | packet.RECURSION_AVAILABLE | packet.AUTHORITATIVE_ANSWER | RCODE[rcode],
        questions: q.questions,
        answers,
      });
    if (!question || q.type !== 'query') return reply('FORMERR');
    const found = this.resolve(client, question.name);
    if (found === undefined) return this.forward(msg, () => reply('NXDOMAIN'));
    if (question.type !== 'A') return reply('NOERROR'); // the swarm's names are IPv4 only
    const answers = found
      .slice(0, MAX_ANSWERS)
      .map((data): packet.Answer => ({ type: 'A', name: question.name, ttl: 0, class: 'IN', data }));
    return reply('NOERROR', answers);
  }

  private async forward(msg: Buffer, otherwise: () => Buffer): Promise<Buffer> {
    for (const up of this.upstreams) {
      const got = await new Promise<Buffer | undefined>((resolve) => {
        const s = createSocket('udp4');
        const timer = setTimeout(() => {
          s.close();
          resolve(undefined);
        }, UPSTREAM_TIMEOUT_MS);
        s.on('message', (m) => {
          clearTimeout(timer);
          s.close();
          resolve(m);
        });
        s.on('error', () => {
          clearTimeout(timer);
          s.close();
          resolve(undefined);
        });
        s.send(msg, 53, up);
      });
      if (got) return got;
    }
    return otherwise();
  }
}

/**
 * `--dns-upstream`: "none" → no upstream; comma-separated IPv4 addresses; absent → the
 * nameservers of this host's /etc/resolv.conf (IPv4 ones).
 */
export function parseUpstreams(flag: string | undefined, resolvConf = '/etc/resolv.conf'): string[] {
  if (flag === 'none') return [];
  if (flag === undefined) {
    let text = '';
    try {
      text = readFileSync(resolvConf, 'utf8');
    } catch {
      return [];
    }
    return text
      .split('\n')
      .map((l) => /^\s*nameserver\s+(\d+\.\d+\.\d+\.\d+)\s*$/.exec(l)?.[1])
      .filter((a): a is string => !!a && isIp(a));
  }
  return flag.split(',').map((a) => {
    const addr = a.trim();
    if (!isIp(addr))
      throw invalid(`invalid --dns-upstream "${flag}": "${addr}" is not an IPv4 address (or use none)`);
    return addr;
  });
}

function isIp(a: string): boolean {
  try {
    parseIp(a);
    return true;
  } catch {
    return false;
  }
}
