/**
 * The global configuration, `~/.cal/config.yaml`, with the spec's defaults.
 *
 * Layering, lowest first: built-in defaults, the global file, a template, command-line flags.
 * Every key is optional in the file; unknown keys are errors that name file:line:column and the
 * keys allowed there, so a typo never silently falls back to a default.
 */

import { z } from "zod";
import { paths } from "./paths.ts";
import { readYamlFile } from "./yaml.ts";
import { MODES, type NetworkMode } from "./network/policy.ts";
import { entryProblem } from "./network/presets.ts";

const positiveInt = z.number().int().positive();

const VmDefaults = z.strictObject({
  /** Which provider new workspaces use; the host's default when absent. */
  provider: z.enum(["tart", "sandbox"]).optional(),
  cpu: positiveInt.optional(),
  /** MB */
  memory: positiveInt.optional(),
  /** GB */
  disk_size: positiveInt.optional(),
  base_image: z.string().min(1).optional(),
  /** The image's login user and password, used once to install the workspace's own key. */
  user: z.string().regex(/^[a-z_][a-z0-9_-]*$/, "a user name like admin").optional(),
  password: z.string().optional(),
  /** Seconds to wait for an IP and a working SSH login after start. */
  boot_timeout: positiveInt.optional(),
});

const GithubDefaults = z.strictObject({
  host: z.string().min(1).optional(),
  default_branch_prefix: z.string().optional(),
  auto_push: z.boolean().optional(),
  create_pr: z.boolean().optional(),
  protected_branches: z.array(z.string()).optional(),
});

const OutputDefaults = z.strictObject({
  sync_dir: z.string().min(1).optional(),
  watch_patterns: z.array(z.string()).optional(),
});

const Snapshots = z.strictObject({
  auto_snapshot_on_session_start: z.boolean().optional(),
  max_auto_snapshots: z.number().int().nonnegative().optional(),
  auto_cleanup_after_days: z.number().int().nonnegative().optional(),
  snapshot_prefix: z.string().optional(),
});

/**
 * An agent's settings for every workspace (under each workspace's `agent_config`): the keys its
 * plugin reads (`mode`, `allowed_tools`, `deny`, `model`...), which differ per agent.
 */
const AgentDefaults = z.looseObject({
  install_command: z.string().optional(),
  config_dir: z.string().optional(),
  default_mode: z.string().optional(),
});

/** A host pattern or `@preset` of an allow or deny list (lib/network/policy.ts), checked on load. */
const NetworkPattern = z.string().superRefine((v, ctx) => {
  const problem = entryProblem(v);
  if (problem) ctx.addIssue({ code: "custom", message: problem });
});

/** `isolation.network`: the egress policy every workspace starts from. */
const NetworkDefaults = z.strictObject({
  mode: z.enum(MODES).optional(),
  allow: z.array(NetworkPattern).optional(),
  deny: z.array(NetworkPattern).optional(),
  /** Hosts the guest's own clients reach without the proxy (its own services). */
  no_proxy: z.array(z.string().regex(/^[A-Za-z0-9.:*-]+$/, "a host name or address")).optional(),
});

export const ConfigFile = z.strictObject({
  version: z.literal(1).optional(),
  isolation: z.strictObject({
    defaults: z.strictObject({
      vm: VmDefaults.optional(),
      github: GithubDefaults.optional(),
      output: OutputDefaults.optional(),
    }).optional(),
    snapshots: Snapshots.optional(),
    network: NetworkDefaults.optional(),
  }).optional(),
  agents: z.record(z.string(), AgentDefaults).optional(),
  ui: z.strictObject({
    theme: z.enum(["auto", "light", "dark"]).optional(),
    show_logs: z.boolean().optional(),
  }).optional(),
});
export type ConfigFile = z.infer<typeof ConfigFile>;

export interface VmSettings {
  provider: "tart" | "sandbox";
  cpu: number;
  memory: number;
  disk_size: number;
  base_image: string;
  user: string;
  password: string;
  boot_timeout: number;
}

export interface Config {
  vm: VmSettings;
  github: {
    host?: string;
    default_branch_prefix: string;
    auto_push: boolean;
    create_pr: boolean;
    protected_branches: string[];
  };
  output: { sync_dir: string; watch_patterns: string[] };
  snapshots: {
    auto_snapshot_on_session_start: boolean;
    max_auto_snapshots: number;
    auto_cleanup_after_days: number;
    snapshot_prefix: string;
  };
  agents: Record<string, z.infer<typeof AgentDefaults>>;
  network: { mode: NetworkMode; allow: string[]; deny: string[]; no_proxy: string[] };
  ui: { theme: "auto" | "light" | "dark"; show_logs: boolean };
}

export const DEFAULT_BASE_IMAGE = "ghcr.io/cirruslabs/macos-sequoia-base:latest";

/** The provider a host uses when nothing names one: Tart on macOS, the sandbox elsewhere. */
export function defaultProvider(): "tart" | "sandbox" {
  return Deno.build.os === "darwin" ? "tart" : "sandbox";
}

export function builtinDefaults(): Config {
  return {
    vm: {
      provider: defaultProvider(),
      cpu: 4,
      memory: 8192,
      disk_size: 80,
      base_image: DEFAULT_BASE_IMAGE,
      user: "admin",
      password: "admin",
      boot_timeout: 180,
    },
    github: {
      default_branch_prefix: "agent/",
      auto_push: false,
      create_pr: false,
      protected_branches: ["main", "master", "develop"],
    },
    output: {
      sync_dir: "~/cal-output",
      watch_patterns: [
        "*.xcarchive",
        "*.ipa",
        "*.apk",
        "*.aab",
        "*.app",
        "*.exe",
        "*.dll",
        "*.xcresult",
      ],
    },
    snapshots: {
      auto_snapshot_on_session_start: true,
      max_auto_snapshots: 3,
      auto_cleanup_after_days: 7,
      snapshot_prefix: "session",
    },
    agents: {},
    // The guest's own services: "localhost" also covers *.localhost for most clients.
    network: {
      mode: "allowlist",
      allow: [],
      deny: [],
      no_proxy: ["localhost", "127.0.0.1", "::1"],
    },
    ui: { theme: "auto", show_logs: true },
  };
}

/** Copies the defined values of `over` onto `base` (one level; undefined never overrides). */
function overlay<T extends object>(base: T, over: Partial<T> | undefined): T {
  const out = { ...base };
  for (const [k, v] of Object.entries(over ?? {})) {
    if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  }
  return out;
}

/** Built-in defaults overlaid with a parsed config file. */
export function layer(file: ConfigFile | undefined): Config {
  const base = builtinDefaults();
  const iso = file?.isolation;
  return {
    vm: overlay(base.vm, iso?.defaults?.vm),
    github: overlay(base.github, iso?.defaults?.github),
    output: overlay(base.output, iso?.defaults?.output),
    snapshots: overlay(base.snapshots, iso?.snapshots),
    agents: { ...base.agents, ...file?.agents },
    network: overlay(base.network, iso?.network),
    ui: overlay(base.ui, file?.ui),
  };
}

/** Loads `~/.cal/config.yaml` (absent is fine) over the built-in defaults. */
export async function loadConfig(): Promise<Config> {
  return layer(await readYamlFile(paths.config(), ConfigFile));
}

/** The VM settings for a new workspace: config, then a template's resources, then flags. */
export function resolveVmSettings(
  config: Config,
  template: Partial<VmSettings> | undefined,
  flags: Partial<VmSettings>,
): VmSettings {
  return overlay(overlay(config.vm, template), flags);
}
