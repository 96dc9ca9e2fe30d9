/**
 * What a node's discovery registration looks like, independent of the backend: the
 * registration of one task and the registry a worker keeps its running tasks in (DESIGN.md §6).
 * The Consul implementation is consul/registry.ts.
 */

/** One task as discovery registers it. */
export interface Registration {
  /** The task id (Consul service id). */
  id: string;
  /** The service name (stack-scoped), Consul service name. */
  name: string;
  address: string;
  port?: number;
  tags: string[];
  meta: Record<string, string>;
  /** passing while the task runs (healthy), critical otherwise. */
  status: 'passing' | 'critical';
  /** Why, for the check's output (e.g. the last healthcheck output). */
  note?: string;
}

/** Where a node registers its tasks. */
export interface Registry {
  /** The registrations this node's registry owns (only those it made: marked by a tag/meta). */
  registered(): Promise<Registration[]>;
  /** Registers (or re-registers, replacing) one task, with its check in `status`. */
  register(r: Registration): Promise<void>;
  /** Changes the check status (and its output) of a registered task. */
  setStatus(id: string, status: Registration['status'], note?: string): Promise<void>;
  deregister(id: string): Promise<void>;
}
