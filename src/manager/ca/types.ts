export type NodeRole = 'manager' | 'worker';
export const ROLES: readonly NodeRole[] = ['manager', 'worker'];

/** The cluster's root of trust. `keyPem` (PKCS#8) stays on managers only. */
export interface ClusterCA {
  certPem: string;
  keyPem: string;
}

/** Who is at the other end of a verified connection. */
export interface NodeIdentity {
  nodeId: string;
  role: NodeRole;
  /** From the certificate's O (`tsswarm-cluster-<clusterId>`), when present. */
  clusterId?: string;
}

/** Organizational unit written in node certificates for each role (swarmkit's `swarm-manager` etc.). */
export const roleOU = (role: NodeRole): string => `tsswarm-${role}`;
export const clusterCN = (clusterId: string): string => `tsswarm-cluster-${clusterId}`;
