/** The scheduler's public API: pure placement of pending tasks on a cluster snapshot (DESIGN.md §4). */
export {
  type Constraint,
  type ConstraintField,
  compileConstraint,
  compileConstraints,
  matchConstraint,
  normalizeArch,
  parseConstraint,
  parseConstraints,
} from './constraints.js';
export type { Filter, FilterName } from './filters.js';
export { schedule } from './schedule.js';
export type {
  Assignment,
  ClusterSnapshot,
  HostPort,
  Node,
  PendingTask,
  Platform,
  Resources,
  RunningTask,
  ScheduleOptions,
  SchedulePlan,
  SpreadPreference,
  Strategy,
  TaskSpec,
  Unplaced,
} from './types.js';
