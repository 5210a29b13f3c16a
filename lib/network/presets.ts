/**
 * Presets: named groups of hosts a workspace needs to do ordinary work, in one table.
 *
 * Every workspace's allow list starts with `@agent` (its agent's API and install hosts, from the
 * agent plugin's `hosts`), `@github` (the GitHub host in use) and `@registries` (every package
 * registry below). A list entry `@name` stands for a preset's hosts in config, in `net allow`
 * and in `net deny` (`deny: ["@cocoapods"]` takes one out; deny wins).
 */

import { patternProblem } from "./policy.ts";

export interface Preset {
  description: string;
  hosts: string[];
}

/** The package registries and OS mirrors; `@registries` is all of them. */
export const REGISTRIES: Record<string, Preset> = {
  npm: {
    description: "npm and Yarn registries, Node.js downloads",
    hosts: ["registry.npmjs.org", "registry.yarnpkg.com", "nodejs.org"],
  },
  pypi: {
    description: "the Python Package Index",
    hosts: ["pypi.org", "files.pythonhosted.org"],
  },
  crates: {
    description: "crates.io and rustup",
    hosts: ["crates.io", "index.crates.io", "static.crates.io", "static.rust-lang.org"],
  },
  go: {
    description: "the Go module proxy, checksum database and toolchains",
    hosts: ["proxy.golang.org", "sum.golang.org", "index.golang.org", "go.dev", "dl.google.com"],
  },
  maven: {
    description: "Maven Central, Gradle and Google's Maven repository",
    hosts: [
      "repo.maven.apache.org",
      "repo1.maven.org",
      "plugins.gradle.org",
      "services.gradle.org",
      "maven.google.com",
      "dl.google.com",
    ],
  },
  rubygems: {
    description: "RubyGems (CocoaPods and fastlane install from it)",
    hosts: ["rubygems.org", "index.rubygems.org"],
  },
  cocoapods: {
    description: "the CocoaPods CDN and trunk (SwiftPM packages come from @github)",
    hosts: ["cdn.cocoapods.org", "trunk.cocoapods.org"],
  },
  homebrew: {
    description: "Homebrew's API and its bottles on GitHub's container registry",
    hosts: ["formulae.brew.sh", "ghcr.io", "pkg-containers.githubusercontent.com"],
  },
  apple: {
    description: "Apple's developer downloads (Xcode, simulator runtimes, command line tools)",
    hosts: [
      "developer.apple.com",
      "download.developer.apple.com",
      "devimages-cdn.apple.com",
      "swcdn.apple.com",
      "swdist.apple.com",
      "updates.cdn-apple.com",
      "mesu.apple.com",
    ],
  },
  debian: {
    description: "Debian and Ubuntu package mirrors",
    hosts: [
      "deb.debian.org",
      "security.debian.org",
      "archive.ubuntu.com",
      "*.archive.ubuntu.com",
      "security.ubuntu.com",
      "ports.ubuntu.com",
    ],
  },
};

/** The hosts of a GitHub (github.com, or a GitHub Enterprise host and its subdomains). */
export function githubHosts(host = "github.com"): string[] {
  const h = host.toLowerCase();
  return h === "github.com"
    ? ["github.com", "*.github.com", "*.githubusercontent.com", "ghcr.io"]
    : [h, `*.${h}`];
}

/** What the presets that depend on the workspace expand to. */
export interface PresetContext {
  /** The workspace's agent's hosts (its plugin's `hosts`). */
  agentHosts: string[];
  /** The GitHub host in use (config `isolation.defaults.github.host`). */
  githubHost?: string;
  /**
   * Hosts the workspace's environments declare: the hook for environment manifests (none
   * declare any yet); they join `@registries`.
   */
  environmentHosts?: string[];
}

/** The preset entries every allow list starts with. */
export const DEFAULT_PRESETS = ["@agent", "@github", "@registries"];

/** Every preset name, for help and errors. */
export function presetNames(): string[] {
  return ["agent", "github", "registries", ...Object.keys(REGISTRIES)];
}

/** The hosts `@name` stands for, or undefined for an unknown preset. */
export function presetHosts(name: string, ctx: PresetContext): string[] | undefined {
  if (name === "agent") return ctx.agentHosts;
  if (name === "github") return githubHosts(ctx.githubHost);
  if (name === "registries") {
    return [
      ...Object.values(REGISTRIES).flatMap((p) => p.hosts),
      ...(ctx.environmentHosts ?? []),
    ];
  }
  return REGISTRIES[name]?.hosts;
}

/**
 * Checks a list entry: a valid pattern or a known `@preset`. Returns the problem, if any, in
 * words a person can act on.
 */
export function entryProblem(entry: string): string | undefined {
  if (entry.startsWith("@")) {
    return presetNames().includes(entry.slice(1))
      ? undefined
      : `unknown preset "${entry}" (presets: ${presetNames().map((n) => "@" + n).join(", ")})`;
  }
  return patternProblem(entry);
}
