/**
 * The provider interface: where a workspace's machine runs.
 *
 * Tart (macOS VMs) is the first provider; the interface also fits a Linux sandbox provider and a
 * fleet provider (Orchard's REST API), so nothing Tart-specific leaks out of its file: machine
 * names, exit codes and output formats are the driver's business.
 */

export type MachineState = "running" | "stopped" | "suspended";

export interface MachineInfo {
  /** The provider's name for the machine. */
  name: string;
  state: MachineState;
  cpu?: number;
  /** MB */
  memory?: number;
  /** GB */
  disk?: number;
  /** GB actually used on the host (copy-on-write clones use little). */
  sizeGb?: number;
  os?: string;
}

export interface MachineSettings {
  cpu: number;
  /** MB */
  memory: number;
  /** GB */
  diskSize: number;
  /** Give the machine its own identity (MAC address, serial number) after a clone. */
  uniqueIdentity: boolean;
  /** "none" cuts the guest off the network (where the provider supports it). */
  network?: "host" | "none";
}

export interface StartOptions {
  /** Host folder shared into the guest as the `output` folder. */
  outputDir?: string;
  /** Append the machine's own console output here. */
  logFile: string;
  /** Open a VNC server for the GUI. */
  vnc?: boolean;
  /** Provider-specific options fixed at init (e.g. the sandbox's network mode). */
  options?: Record<string, string | number | boolean>;
  /**
   * The workspace's egress policy mode, and where cal's egress proxy listens for it: "open"
   * (the host's network as it is), "allowlist" (out only through the proxy), "none" (nothing).
   */
  network?: {
    mode: "open" | "allowlist" | "none";
    /** The proxy's unix socket on the host (a provider that can bind it into the guest). */
    proxySocket?: string;
    /** The proxy's TCP address, for guests that reach the host over a network (Tart). */
    proxyTcp?: { host: string; port: number };
    /** Hosts the guest's clients reach without the proxy (NO_PROXY). */
    noProxy?: string[];
  };
}

export interface StartResult {
  /** The process that runs the machine, when the provider has one on this host. */
  pid?: number;
  /** Settles if the machine's process ends, with what it logged since it was started. */
  exited?: Promise<{ code: number; log: string }>;
  /** Where this start's output begins in the log file. */
  logOffset?: number;
  /** What the person should know about this start (e.g. limits this host cannot enforce). */
  warnings?: string[];
}

/** Where to reach the guest's SSH server. */
export interface Endpoint {
  host: string;
  port: number;
  /** A command whose stdin/stdout reach the guest's sshd (ssh's ProxyCommand), when no route does. */
  proxyCommand?: string[];
}

export interface Provider {
  readonly name: string;
  /** One sentence saying what the isolation is, for banners and status. */
  readonly isolation: string;
  /** Whether its machines have a screen (`start --vnc`). */
  readonly screen: boolean;
  /** Throws a clear error (with how to install) when the provider's tools are missing. */
  ensureAvailable(): Promise<void>;
  /** Creates machine `target` from an image or another machine. */
  clone(source: string, target: string, onProgress?: (line: string) => void): Promise<void>;
  configure(name: string, settings: MachineSettings): Promise<void>;
  /** Starts the machine in the background; returns once it is launched, not once it is ready. */
  start(name: string, opts: StartOptions): Promise<StartResult>;
  /** Stops the machine; `timeoutSeconds: 0` stops it at once. */
  stop(name: string, opts: { timeoutSeconds: number }): Promise<void>;
  delete(name: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  list(): Promise<MachineInfo[]>;
  /** `undefined` when the machine does not exist. */
  get(name: string): Promise<MachineInfo | undefined>;
  /** The guest's SSH endpoint, or `undefined` while it has none. */
  endpoint(name: string): Promise<Endpoint | undefined>;
  /**
   * Throws a clear wrong-state error when starting one more machine would exceed the host's
   * limit (Apple allows two running macOS VMs).
   */
  checkCapacity(starting: string): Promise<void>;
  /**
   * Authorizes a public key for the guest user's login directly, for providers whose guest's
   * sshd cal configures (so no password is ever needed). Tart's guests learn the key over SSH.
   */
  authorizeKey?(name: string, publicKey: string): Promise<void>;
  /** Paths of half-made machines killed copies left behind (for `cleanup`). */
  leftovers?(): Promise<string[]>;
  /** Removes one path `leftovers()` gave; refused when it is no longer a leftover. */
  removeLeftover?(path: string): Promise<void>;
  /** Removes cached images unused for `days` days, where the provider keeps a cache. */
  pruneCache?(days: number): Promise<void>;
}
