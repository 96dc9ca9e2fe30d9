/** Which nodes a global service (or global job) runs on, using the scheduler's constraint matcher. */

import type { Node } from '../../scheduler/index.js';
import { compileConstraints, parseConstraint } from '../../scheduler/index.js';
import type { NodeView, ServiceView } from './types.js';

export interface Eligibility {
  /** A new task may be placed on the node: ready, active, and every constraint holds. */
  accepts(node: NodeView): boolean;
  /** The node's task must go: node deleted, down, drained, or a constraint no longer holds. */
  evicts(node: NodeView | undefined): boolean;
}

function asSchedulerNode(n: NodeView): Node {
  return {
    id: n.id,
    hostname: n.hostname ?? n.id,
    role: n.role,
    availability: n.availability,
    status: n.status,
    labels: n.labels,
    ...(n.engineLabels ? { engineLabels: n.engineLabels } : {}),
    platform: n.platform,
    resources: { nanoCpus: 0, memoryBytes: 0 },
    tasks: [],
  };
}

/** Throws `invalid_argument` for a constraint that does not parse (the service was validated at deploy). */
export function eligibility(service: ServiceView): Eligibility {
  const match = compileConstraints(service.constraints.map(parseConstraint));
  const fits = (n: NodeView) => match(asSchedulerNode(n));
  return {
    accepts: (n) => n.status === 'ready' && n.availability === 'active' && fits(n),
    evicts: (n) => n === undefined || n.status === 'down' || n.availability === 'drain' || !fits(n),
  };
}
