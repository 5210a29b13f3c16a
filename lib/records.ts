/**
 * The records cal's commands emit: plain objects with a `kind`, printed as NDJSON between tools
 * and as tables for people. One file holds every record type so that pipelines have one
 * reference; `mod.ts` re-exports them.
 */

export type WorkspaceState =
  | "running"
  | "stopped"
  | "suspended"
  | "creating"
  | "missing"
  | "broken"
  | "destroyed";

export interface WorkspaceRecord {
  kind: "workspace";
  workspace: string;
  state: WorkspaceState;
  provider: string;
  /** What the isolation is, in words (a VM, or namespaces with a shared kernel). */
  isolation?: string;
  /** The egress mode its next start gives it (`status` only): allowlist, open or none. */
  network?: "allowlist" | "open" | "none";
  /** The provider's own name for the machine (the Tart VM name). */
  vm: string;
  ip?: string;
  cpu: number;
  memory: number;
  disk: number;
  /** Disk space the VM uses on the host, in GB, when the provider knows it. */
  size_gb?: number;
  base_image: string;
  agent?: string;
  environments: string[];
  created_at: string;
  /** Why a workspace is `broken` or `missing`, and what to do about it. */
  problem?: string;
}

export interface EventRecord {
  kind: "event";
  workspace?: string;
  event: string;
  message: string;
  time: string;
  [extra: string]: unknown;
}

export interface ErrorRecord {
  kind: "error";
  workspace?: string;
  code: string;
  exit: number;
  message: string;
  hint?: string;
}

export interface CheckRecord {
  kind: "check";
  workspace: string;
  check: string;
  ok: boolean;
  detail: string;
}

export interface ExecRecord {
  kind: "exec";
  workspace: string;
  argv: string[];
  exit: number;
}

export interface SnapshotRecord {
  kind: "snapshot";
  workspace: string;
  snapshot: string;
  created_at: string;
  /** Taken automatically at session start (true) or by a person (false). */
  auto: boolean;
  /** The provider's machine that holds the snapshot. */
  vm: string;
  size_gb?: number;
  /** The workspace's state when it was taken. */
  source_state?: string;
  /** Set on the record of a snapshot that was just removed. */
  deleted?: boolean;
  /** What is wrong with it (e.g. its create was interrupted) and what to do. */
  problem?: string;
}

export interface AgentRecord {
  kind: "agent";
  workspace: string;
  agent: string;
  display_name: string;
  installed: boolean;
  version?: string;
  /** How cal installed it (native, brew, npm, ...). */
  method?: string;
  /** The workspace's active agent. */
  active: boolean;
  source: "builtin" | "community";
}

/** A finished agent run (headless, or interactive once the session ends). */
export interface RunRecord {
  kind: "run";
  workspace: string;
  agent: string;
  mode: "interactive" | "headless";
  autonomous: boolean;
  exit: number;
  duration_s: number;
  timed_out?: boolean;
  session_id?: string;
  cost_usd?: number;
  permission_denials?: unknown[];
  result?: string;
  /** The session-start snapshot taken before the run, if any. */
  snapshot?: string;
  repo?: string;
}

/** A repository in a workspace's guest, with its git state. */
export interface RepoRecord {
  kind: "repo";
  workspace: string;
  repo: string;
  url: string;
  branch: string;
  modified: number;
  added: number;
  deleted: number;
  untracked: number;
  ahead?: number;
  behind?: number;
  /**
   * The ref ahead/behind count against: the upstream (`origin/agent/x`), or, for a branch with
   * none yet (never pushed), the remote's default branch it was cut from (`origin/main`).
   */
  compared_with?: string;
  last_commit?: string;
  last_commit_at?: string;
  /** Set by commit: the new commit. */
  commit?: string;
  pushed?: boolean;
}

export interface PullRequestRecord {
  kind: "pr";
  workspace: string;
  repo: string;
  url: string;
  number?: number;
  title: string;
  base: string;
  head: string;
  draft: boolean;
}

export interface AuthRecord {
  kind: "auth";
  workspace: string;
  host: string;
  logged_in: boolean;
  user?: string;
  detail?: string;
}

export interface DiskUsageRecord {
  kind: "disk-usage";
  workspace: string;
  vm_gb: number;
  snapshots_gb: number;
  snapshots: number;
  total_gb: number;
}

export interface ScheduleRecord {
  kind: "schedule";
  scheduler: "launchd" | "cron";
  /** What was (or would be) installed: the crontab line or the plist's path. */
  entry: string;
  installed: boolean;
}

/** A repository in a guest with work that exists nowhere else. */
export interface UnsavedWork {
  repo: string;
  /** Modified, added or deleted files not yet committed. */
  changes: number;
  /** Commits on local branches that no remote has. */
  unpushed: number;
}

export type CalRecord =
  | WorkspaceRecord
  | EventRecord
  | ErrorRecord
  | CheckRecord
  | ExecRecord
  | SnapshotRecord
  | DiskUsageRecord
  | ScheduleRecord
  | AgentRecord
  | RunRecord
  | RepoRecord
  | PullRequestRecord
  | AuthRecord
  | EnvironmentRecord
  | TemplateRecord
  | ArtifactRecord
  | HookRecord
  | LogRecord
  | SignPlanRecord
  | NetworkRecord
  | ConnectionRecord;

/** A development environment: known to cal, and (with a workspace) its state in that guest. */
export interface EnvironmentRecord {
  kind: "environment";
  workspace?: string;
  environment: string;
  display_name: string;
  /** missing: the workspace asked for it and it is not installed; failed: its install stopped. */
  status: "installed" | "available" | "missing" | "failed";
  /** Measured in the guest when installed ("11.8 GB"), else the manifest's estimate ("~12 GB"). */
  size: string;
  description: string;
  provides: string[];
  requires: string[];
  recommends: string[];
  source: "core" | "community";
  /** The installed version, else the plugin's. */
  version: string;
  variant?: string;
  installed_at?: string;
  /** Why it failed, or what it lacks. */
  detail?: string;
  /** The result of each check (`cal-env verify`). */
  checks?: { command: string; ok: boolean; output: string }[];
}

/** A VM template (`cal-env templates`). */
export interface TemplateRecord {
  kind: "template";
  template: string;
  description: string;
  base_image?: string;
  environments: string[];
  resources?: { cpu?: number; memory?: number; disk_size?: number };
  source: "core" | "user";
}

/** A build artifact on the host (`cal-sync sync`, `watch`, `sign`). */
export interface ArtifactRecord {
  kind: "artifact";
  workspace: string;
  /** Where it is on the host. */
  path: string;
  category: "builds" | "test-results" | "logs";
  /** Size in bytes (a bundle's files added up). */
  bytes: number;
  /** Where it came from: the guest path (sync), or the archive it was signed from (sign). */
  source?: string;
  /** Copied (or finished) just now, as opposed to already there. */
  new: boolean;
  /** xcarchive, ipa, apk, aab, app, xcresult or other. */
  type?: string;
  /** The pattern that selected it, and where the pattern came from (config or an environment). */
  pattern?: string;
  pattern_from?: string;
}

/** A watch hook that ran for an artifact. */
export interface HookRecord {
  kind: "hook";
  workspace: string;
  /** on-archive, on-ipa, on-apk or on-any. */
  hook: string;
  path: string;
  command: string;
  exit: number;
  duration_s: number;
}

/** One line of a log (`cal-sync logs --json`). */
export interface LogRecord {
  kind: "log";
  workspace: string;
  /** The log file (the VM's own log, or a build log in the output folder). */
  file: string;
  line: string;
}

/** What `cal-sync sign` runs (or would run, with --dry-run). */
export interface SignPlanRecord {
  kind: "sign-plan";
  workspace: string;
  archive: string;
  bundle_id: string;
  identity: string;
  /** Whether the identity was found in the keychain (false: not checked on this host). */
  identity_checked: boolean;
  profiles: { path: string; name: string; uuid: string; bundle_id: string }[];
  method: string;
  team_id: string;
  export_options: string;
  export_options_path: string;
  command: string[];
  output: string;
  /** Profiles copied to where Xcode looks for them (they were not installed). */
  install_profiles?: string[];
  dry_run: boolean;
}

/** A workspace's egress policy (`cal-vm net WS`): its mode and the rules in force. */
export interface NetworkRecord {
  kind: "network";
  workspace: string;
  mode: "allowlist" | "open" | "none";
  /** Where the mode came from. */
  mode_from: "workspace" | "config" | "default";
  /** Rules with their source (`default @npm`, `config`, `workspace`...); deny wins. */
  allow: { pattern: string; source: string }[];
  deny: { pattern: string; source: string }[];
  /** Whether the workspace's proxy is running now. */
  proxy_running: boolean;
}

/** One connection the proxy allowed or refused (`cal-vm net log WS`). */
export interface ConnectionRecord {
  kind: "connection";
  workspace: string;
  time: string;
  host: string;
  port: number;
  decision: "allowed" | "refused";
  /** The rule that decided: a pattern, or mode:open, mode:none, not-allowed, host-local... */
  rule: string;
  source?: string;
  reason?: string;
}
