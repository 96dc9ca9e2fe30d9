import type { Etcd3 } from 'etcd3';
import { TsswarmError } from '../../api/errors.js';

/**
 * Membership of the swarm's own etcd cluster (the members that `swarm init` and manager joins
 * start). A new manager's member is added as a raft learner, which does not count towards
 * quorum, and promoted to a voting member once it has caught up: growing the cluster never
 * leaves it without a quorum while the new member starts.
 */

export interface MemberInfo {
  id: string;
  name: string;
  peerURLs: string[];
  clientURLs: string[];
  isLearner: boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The etcd member name of a manager node. */
export const memberName = (nodeId: string) => `tsswarm-${nodeId.slice(0, 12)}`;

export async function listMembers(client: Etcd3): Promise<MemberInfo[]> {
  const res = await client.cluster.memberList({ linearizable: true });
  return res.members.map((m) => ({
    id: String(m.ID),
    name: m.name,
    peerURLs: m.peerURLs,
    clientURLs: m.clientURLs,
    isLearner: !!m.isLearner,
  }));
}

/** Client URLs of the started members. */
export async function memberEndpoints(client: Etcd3): Promise<string[]> {
  return (await listMembers(client)).filter((m) => !m.isLearner).flatMap((m) => m.clientURLs);
}

/**
 * Adds a learner member for `name` at peerURL and returns `--initial-cluster` for it. A learner
 * left behind by a join that never started (etcd allows one learner at a time) is removed first;
 * a member already at that peer URL (a retried join) is replaced.
 */
export async function addLearner(client: Etcd3, name: string, peerURL: string): Promise<string> {
  for (const m of await listMembers(client)) {
    if ((m.isLearner && !m.name) || m.peerURLs.includes(peerURL)) {
      if (!m.isLearner && m.name)
        throw new TsswarmError(
          'conflict',
          `etcd member ${m.name} already uses ${peerURL}: remove that node (node demote / node rm) first`,
        );
      await retryUnhealthy(() => client.cluster.memberRemove({ ID: m.id }));
    }
  }
  const res = await retryUnhealthy(() => client.cluster.memberAdd({ peerURLs: [peerURL], isLearner: true }));
  const newId = String(res.member.ID);
  return res.members
    .map((m) => `${String(m.ID) === newId ? name : m.name}=${m.peerURLs[0]}`)
    .filter((s) => !s.startsWith('='))
    .join(',');
}

/**
 * etcd refuses membership changes until its leader has been connected to every voting member
 * for five seconds ("unhealthy cluster"), as right after a promotion: wait for that.
 */
async function retryUnhealthy<T>(fn: () => Promise<T>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (!/unhealthy cluster/i.test((e as Error).message) || Date.now() > deadline) throw e;
      await sleep(500);
    }
  }
}

/** Promotes the learner at peerURL to a voting member, retrying while it catches up. */
export async function promoteLearner(client: Etcd3, peerURL: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const me = (await listMembers(client)).find((m) => m.peerURLs.includes(peerURL));
    if (!me) throw new TsswarmError('not_found', `no etcd member at ${peerURL} is in the cluster`);
    if (!me.isLearner) return;
    try {
      await client.cluster.memberPromote({ ID: me.id });
      return;
    } catch (e) {
      if (Date.now() > deadline)
        throw new TsswarmError(
          'daemon_unreachable',
          `the etcd member at ${peerURL} did not catch up to be promoted: ${(e as Error).message}`,
        );
      await sleep(300);
    }
  }
}

/** Removes the member `name` (a manager leaving or demoted); absent is fine. */
export async function removeMember(client: Etcd3, name: string): Promise<boolean> {
  const m = (await listMembers(client)).find((x) => x.name === name);
  if (!m) return false;
  await retryUnhealthy(() => client.cluster.memberRemove({ ID: m.id }));
  return true;
}
