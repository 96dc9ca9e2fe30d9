/** The orchestrators of the control plane: pure reconcilers of services into tasks (DESIGN.md §4). */
export { type Eligibility, eligibility } from './eligibility.js';
export { reconcileGlobal } from './global.js';
export { DEFAULT_HISTORY_LIMIT, historyKey, pruneGroup, pruneHistory } from './history.js';
export { type JobProgress, type JobResult, reconcileJobs } from './jobs.js';
export { reconcileReplicated } from './replicated.js';
export { decideRestart, newTask, type RestartDecision } from './restart.js';
export {
  canTransition,
  endedInFailure,
  hasEnded,
  isDesiredUp,
  isLive,
  isTerminal,
  ownerOf,
  rankOf,
  TASK_STATES,
} from './states.js';
export type * from './types.js';
export {
  failedOnItsOwn,
  type InFlight,
  type Monitored,
  startUpdate,
  type UpdateAction,
  type UpdaterState,
  type UpdateStatus,
  type UpdateStepResult,
  updateStep,
} from './updater.js';
