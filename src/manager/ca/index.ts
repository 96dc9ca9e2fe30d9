export {
  CA_VALIDITY_DAYS,
  caCertDigest,
  createCertificateRequest,
  createClusterCA,
  DEFAULT_NODE_VALIDITY_DAYS,
  type IssueOptions,
  identityFromCertificate,
  issueNodeCertificate,
  newNodeKey,
  type PeerCertificateLike,
  verifyChain,
} from './ca.js';
export { clientTlsOptions, type NodeCredentials, peerIdentity, serverTlsOptions } from './tls.js';
export {
  caDigest,
  formatJoinToken,
  type JoinToken,
  newJoinToken,
  parseJoinToken,
  type Rng,
  verifyJoinToken,
} from './token.js';
export { type ClusterCA, clusterCN, type NodeIdentity, type NodeRole, roleOU } from './types.js';
