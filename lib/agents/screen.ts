/**
 * The launch experience: the confirmation screen before an agent starts (Enter launches,
 * B backs up first, Q quits) and the status banner above the session (green running, yellow
 * starting/stopping, red error). Shown only on a terminal; `--yes` skips the screen.
 */

import pc from "picocolors";

export interface ScreenInfo {
  workspace: string;
  vmState: string;
  isolation: string;
  environments: string[];
  agent: string;
  repository: string;
  lastBackup: string;
  autonomous: boolean;
  /** The egress mode (allowlist, open, none); undefined where unknown. */
  network?: string;
}

// deno-lint-ignore no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;
/** Display width: ANSI codes take none, emoji take two columns. */
function width(s: string): number {
  let w = 0;
  for (const ch of s.replace(ANSI, "")) {
    const cp = ch.codePointAt(0)!;
    if (cp === 0xfe0f) continue;
    w += cp >= 0x1f300 || (cp >= 0x2600 && cp <= 0x27bf && cp !== 0x2713 && cp !== 0x2717) ? 2 : 1;
  }
  return w;
}
const pad = (s: string, n: number) => s + " ".repeat(Math.max(0, n - width(s)));

export function confirmationScreen(i: ScreenInfo, inner = 65): string {
  const line = (s = "") => `│${pad("  " + s, inner)}│`;
  const center = (s: string) => {
    const left = Math.floor((inner - width(s)) / 2);
    return `│${pad(" ".repeat(left) + s, inner)}│`;
  };
  const row = (k: string, v: string) => line(`${pad(k + ":", 15)}${v}`);
  const state = i.vmState === "running" ? pc.green("● Running") : pc.yellow(`● ${i.vmState}`);
  return [
    `┌${"─".repeat(inner)}┐`,
    center("🔒 CAL Isolation Check"),
    `├${"─".repeat(inner)}┤`,
    line(),
    row("Workspace", i.workspace),
    row("VM Status", state),
    row("Isolation", `${pc.green("✓")} Active - ${i.isolation}`),
    row("Environments", i.environments.length ? i.environments.join(", ") : "(none)"),
    row("Agent", i.agent + (i.autonomous ? " (autonomous)" : "")),
    row("Repository", i.repository),
    ...(i.network ? [row("Network", networkWords(i.network))] : []),
    line(),
    line(
      `⚠️  The agent will have full access within the ${
        i.isolation.includes("namespaces") ? "sandbox" : "VM"
      }.`,
    ),
    line("    Your host system and other files are protected."),
    ...(i.network === "open"
      ? [line(pc.yellow("⚠️  The network is open: the agent can reach your local services"))]
      : []),
    line(),
    line(`Last backup: ${i.lastBackup}`),
    line(),
    `├${"─".repeat(inner)}┤`,
    `│${
      pad(
        " ".repeat(Math.max(0, inner - 53)) +
          "[Enter] Launch Agent    [B] Backup First    [Q] Quit ",
        inner,
      )
    }│`,
    `└${"─".repeat(inner)}┘`,
  ].join("\n");
}

function networkWords(mode: string): string {
  return mode === "allowlist"
    ? `${pc.green("✓")} Allowlist (out only through cal's proxy)`
    : mode === "none"
    ? `${pc.green("✓")} None (nothing goes out)`
    : pc.yellow("⚠️ Open (whatever the host reaches)");
}

export type Choice = "launch" | "backup" | "quit";

/** Waits for Enter, B or Q (Ctrl-C, Ctrl-D and Esc count as Q). */
export async function askLaunch(): Promise<Choice> {
  Deno.stdin.setRaw(true);
  try {
    const buf = new Uint8Array(16);
    while (true) {
      const n = await Deno.stdin.read(buf);
      if (n === null) return "quit";
      const key = buf[0];
      if (key === 13 || key === 10) return "launch";
      if (key === 98 || key === 66) return "backup";
      if (key === 113 || key === 81 || key === 3 || key === 4 || key === 27) return "quit";
    }
  } finally {
    Deno.stdin.setRaw(false);
  }
}

export type BannerState = "running" | "starting" | "stopping" | "error";

/** The one-line banner: 🔒 CAL ISOLATION ACTIVE │ VM: ws │ Env: ios,android │ Safe Mode. */
export function banner(
  i: Pick<ScreenInfo, "workspace" | "environments" | "network"> & { sandbox?: boolean },
  state: BannerState,
  columns = 80,
): string {
  const label = state === "running"
    ? "🔒 CAL ISOLATION ACTIVE"
    : state === "error"
    ? "⚠️  CAL ISOLATION ERROR"
    : `🔒 CAL ISOLATION ${state.toUpperCase()}`;
  const env = i.environments.length ? i.environments.join(",") : "none";
  const where = i.sandbox
    ? `Sandbox: ${i.workspace} (namespaces, shared kernel)`
    : `VM: ${i.workspace}`;
  // The allowlist is what Safe Mode means; only a departure from it takes room on the line.
  const net = i.network === "open" ? " │ ⚠️ NET OPEN" : i.network === "none" ? " │ Net: none" : "";
  const text = pad(` ${label} │ ${where} │ Env: ${env}${net} │ Safe Mode`, columns);
  const paint = state === "running" ? pc.bgGreen : state === "error" ? pc.bgRed : pc.bgYellow;
  return paint(pc.black(pc.bold(text)));
}

/** The terminal's title, so the isolation stays visible while the agent owns the screen. */
export function titleSequence(workspace: string): string {
  return `\x1b]0;🔒 cal: ${workspace}\x07`;
}
