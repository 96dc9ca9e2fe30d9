import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ConsulSettings, TaskSource } from '../discovery/node.js';
import type { Engine } from '../engine/engine.js';
import { atomicWriteJson } from '../engine/fsutil.js';
import type { NodeCredentials } from '../manager/ca/tls.js';
import type { JoinAnswer } from '../manager/dispatcher.js';
import { nodeNetworkFor } from '../network/node.js';
import { Agent } from './agent.js';
import { certificateAddress, NodeApi } from './nodeApi.js';
import { callJson, RemoteLink } from './remoteLink.js';

/** What a worker remembers of its swarm (DATA_ROOT/swarm.json, keys beside it). */
export interface WorkerState {
  role: 'worker';
  clusterId: string;
  nodeId: string;
  /** Dispatcher addresses of the managers, kept up to date from heartbeat answers. */
  managers: string[];
  /** The swarm's Consul settings, when it registers its tasks in Consul. */
  discovery?: ConsulSettings;
}

/** This daemon as a worker: no etcd, only a TLS session with one of the managers. */
export class WorkerNode {
  /** Called once when a manager promoted this node. */
  onPromoted?: () => void;
  /** Serves this node's task logs to managers (`service logs`). */
  private nodeApi?: NodeApi;
  /** Set once the node leaves or closes: a late heartbeat answer then writes nothing. */
  private closed = false;
  /** The last write of swarm.json a heartbeat answer started. */
  private saving: Promise<void> = Promise.resolve();

  private constructor(
    private readonly dataRoot: string,
    readonly state: WorkerState,
    private readonly creds: NodeCredentials,
    private readonly link: RemoteLink,
    private readonly agent: Agent,
  ) {}

  /** Starts as the worker a manager just accepted (see requestJoin). */
  static async joined(
    engine: Engine,
    answer: JoinAnswer,
    creds: NodeCredentials,
    manager: string,
    log: (m: string) => void,
  ): Promise<WorkerNode> {
    const dataRoot = engine.opts.dataRoot;
    await atomicWriteJson(join(dataRoot, 'swarm-creds.json'), creds);
    const state: WorkerState = {
      role: 'worker',
      clusterId: answer.clusterId,
      nodeId: answer.nodeId,
      managers: [...new Set([manager, ...(answer.managers ?? [])])],
      ...(answer.discovery ? { discovery: answer.discovery } : {}),
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
    const vtep = certificateAddress(creds.certPem);
    const agent = new Agent(engine, link, state.nodeId, log, nodeNetworkFor(engine.opts, vtep, log));
    const node = new WorkerNode(engine.opts.dataRoot, state, creds, link, agent);
    link.onHeartbeat = (a) => node.heard(a);
    link.startHeartbeats();
    await agent.start();
    node.nodeApi = new NodeApi(engine, {
      address: certificateAddress(creds.certPem),
      creds,
      clusterId: state.clusterId,
      log,
    });
    await node.nodeApi.start();
    return node;
  }

  /** A heartbeat answer: the managers as they are now, and this node's role. */
  private heard(a: { managers?: string[]; role?: string }): void {
    if (this.closed) return;
    if (a.managers?.length && JSON.stringify(a.managers) !== JSON.stringify(this.state.managers)) {
      this.state.managers = a.managers;
      this.link.setManagers(a.managers);
      const path = join(this.dataRoot, 'swarm.json');
      this.saving = this.saving
        .then(() => (this.closed ? undefined : atomicWriteJson(path, this.state)))
        .catch(() => {});
    }
    if (a.role === 'manager' && this.onPromoted) {
      const cb = this.onPromoted;
      this.onPromoted = undefined;
      cb();
    }
  }

  /** The manager this node's session is with now. */
  get manager(): string {
    return this.link.manager;
  }

  /** This node's worker agent (what discovery registers). */
  get taskSource(): TaskSource {
    return this.agent;
  }

  /** The address this node is known at (its certificate's). */
  get address(): string {
    return certificateAddress(this.creds.certPem);
  }

  get credentials(): NodeCredentials {
    return this.creds;
  }

  /** Stops the session and the agent; containers keep running. */
  async close(): Promise<void> {
    this.closed = true;
    await this.nodeApi?.close();
    await this.agent.stop();
    await this.saving;
  }

  /** `swarm leave`: tells the managers (best effort), removes the task containers, forgets the swarm. */
  async leave(): Promise<void> {
    this.closed = true;
    await this.saving;
    await callJson(this.link.manager, this.creds, 'POST', '/leave', {}).catch(() => {});
    await this.nodeApi?.close();
    await this.agent.removeTaskContainers();
  }
}
