import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism, hostname, totalmem } from 'node:os';
import { join } from 'node:path';
import { invalid } from '../api/errors.js';
import type { Engine } from '../engine/engine.js';
import { atomicWriteJson } from '../engine/fsutil.js';
import { createCertificateRequest, newNodeKey } from '../manager/ca/ca.js';
import type { NodeCredentials } from '../manager/ca/tls.js';
import { caDigest, parseJoinToken } from '../manager/ca/token.js';
import type { JoinAnswer, JoinRequest } from '../manager/dispatcher.js';
import { Agent } from './agent.js';
import { callJson, callManager, RemoteLink, readBody } from './remoteLink.js';

/** What a worker remembers of its swarm (DATA_ROOT/swarm.json, keys beside it). */
interface WorkerState {
  role: 'worker';
  clusterId: string;
  nodeId: string;
  managers: string[];
}

/** This daemon as a worker: no etcd, only a TLS session with a manager. */
export class WorkerNode {
  private constructor(
    readonly state: WorkerState,
    private readonly agent: Agent,
  ) {}

  static async join(
    engine: Engine,
    opts: { token: string; manager: string; advertiseAddr?: string },
    log: (m: string) => void,
  ): Promise<WorkerNode> {
    const dataRoot = engine.opts.dataRoot;
    if (existsSync(join(dataRoot, 'swarm.json'))) throw invalid('this node is already part of a swarm');
    const parsed = parseJoinToken(opts.token);
    // the CA is fetched unverified, then checked against the digest the token carries
    const caRes = await callManager(opts.manager, { insecure: true }, 'GET', '/ca');
    const caCertPem = await readBody(caRes);
    if (caDigest(caCertPem) !== parsed.caDigest) {
      throw invalid(`the manager at ${opts.manager} is not of the cluster this join token was made for`);
    }
    const key = newNodeKey();
    const csrPem = await createCertificateRequest(key);
    const req: JoinRequest = {
      token: opts.token,
      csrPem,
      hostname: hostname(),
      address: opts.advertiseAddr ?? '',
      platform: { os: 'linux', arch: process.arch === 'x64' ? 'x86_64' : process.arch },
      resources: { nanoCpus: availableParallelism() * 1e9, memoryBytes: totalmem() },
    };
    const answer = await callJson<JoinAnswer>(opts.manager, { caCertPem }, 'POST', '/join', req);
    const creds: NodeCredentials = { caCertPem, certPem: answer.certPem, keyPem: key.keyPem };
    await atomicWriteJson(join(dataRoot, 'swarm-creds.json'), creds);
    const state: WorkerState = {
      role: 'worker',
      clusterId: answer.clusterId,
      nodeId: answer.nodeId,
      managers: [opts.manager],
    };
    await atomicWriteJson(join(dataRoot, 'swarm.json'), state);
    log(`joined swarm ${state.clusterId} as worker ${state.nodeId}`);
    return WorkerNode.start(engine, state, creds, log);
  }

  /** True when the data root holds a worker's membership. */
  static isWorker(dataRoot: string): boolean {
    const p = join(dataRoot, 'swarm.json');
    return existsSync(p) && (JSON.parse(readFileSync(p, 'utf8')) as { role?: string }).role === 'worker';
  }

  static async restore(engine: Engine, log: (m: string) => void): Promise<WorkerNode> {
    const dataRoot = engine.opts.dataRoot;
    const state = JSON.parse(readFileSync(join(dataRoot, 'swarm.json'), 'utf8')) as WorkerState;
    const creds = JSON.parse(readFileSync(join(dataRoot, 'swarm-creds.json'), 'utf8')) as NodeCredentials;
    log(`rejoining swarm ${state.clusterId} as worker ${state.nodeId}`);
    return WorkerNode.start(engine, state, creds, log);
  }

  private static async start(
    engine: Engine,
    state: WorkerState,
    creds: NodeCredentials,
    log: (m: string) => void,
  ) {
    const link = new RemoteLink(state.managers, creds, log);
    const agent = new Agent(engine, link, state.nodeId, log);
    link.startHeartbeats();
    await agent.start();
    return new WorkerNode(state, agent);
  }

  async close(): Promise<void> {
    await this.agent.stop();
  }
}
