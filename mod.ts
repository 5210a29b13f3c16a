/**
 * cal as a library: the API for CAL core and other programs (the spec's FR-8). Everything the
 * commands do is here, as functions that take names and options and return records.
 *
 * ```ts
 * import { list, start, Output, loadConfig } from "./mod.ts";
 * const out = new Output({ json: true });
 * for (const w of await list()) if (w.state === "stopped") await start(w.workspace, await loadConfig(), {}, out);
 * ```
 */

export * from "./lib/records.ts";
export { CalError, ExitCode } from "./lib/errors.ts";
export { type Config, layer, loadConfig } from "./lib/config.ts";
export { Output } from "./lib/output.ts";
export { nameProblem, validateName } from "./lib/names.ts";
export type { MachineInfo, Provider } from "./lib/provider.ts";
export { getProvider, PROVIDERS } from "./lib/providers/registry.ts";
export { init, start, stop } from "./lib/lifecycle.ts";
export { cleanup, destroy } from "./lib/teardown.ts";
export { health, list, status } from "./lib/inspect.ts";
export { connect, load, machineName } from "./lib/workspace.ts";
export { Guest } from "./lib/guest/ssh.ts";
export { launch } from "./lib/guest/launch.ts";
export {
  autoSnapshot,
  cleanupSnapshots,
  createSnapshot,
  deleteSnapshot,
  diskUsage,
  listSnapshots,
  restoreSnapshot,
  rollback,
} from "./lib/snapshots.ts";
export type { AgentContext, AgentPlugin, ConfigEdit } from "./lib/agents/plugin.ts";
export { allAgents, getAgent } from "./lib/agents/registry.ts";
export { installAgent, listAgents, updateAgent, useAgent } from "./lib/agents/manage.ts";
export { runAgent } from "./lib/agents/run.ts";
export { login, logout, status as authStatus } from "./lib/github/auth.ts";
export { clone, commit, pr, push } from "./lib/github/repos.ts";
export { repoStatuses } from "./lib/github/status.ts";
export {
  environmentInfo,
  installEnvironments,
  listEnvironments,
  removeEnvironment,
  updateEnvironments,
  verifyEnvironments,
} from "./lib/environments/manage.ts";
export { listTemplates } from "./lib/environments/records.ts";
export { quick } from "./lib/quick.ts";
export { syncWorkspace } from "./lib/sync/pull.ts";
export { watch } from "./lib/sync/watch.ts";
export { executeSigning, planSigning } from "./lib/sync/sign.ts";
