/**
 * Which files are build artifacts, and where they go on the host.
 *
 * Patterns are globs (`*`, `?`, `[...]`, `{a,b}`, `**`) matched against a path relative to the
 * folder being searched:
 * - a pattern without `/` (`*.apk`) matches the file's name at any depth;
 * - a pattern with `/` (`build/outputs/**`) matches at any depth too, starting at a folder
 *   boundary (as if it began with `** /`), unless it starts with `/`, which anchors it;
 * - wildcards never match a name that starts with a dot, unless the pattern spells the dot;
 * - an exclude also matches when it matches any folder above the path (`node_modules`,
 *   `.gradle/**`, `DerivedData/**` all exclude everything beneath).
 *
 * Sorting into the host's output folder (the spec's "Directory Structure (Host)"):
 * - test-results/: `.xcresult`, `.trx`, `.junit` (fastlane scan), JUnit XML (a name with
 *   `junit` or `TEST-*.xml`, or any XML in a test-results, surefire-reports, failsafe-reports,
 *   test-reports, TestResults or junit folder), and coverage reports (`lcov.info`, `*.lcov`,
 *   `clover.xml`, `coverage.xml`/`.json`, `coverage-final.json`, `*cobertura*.xml`, `jacoco*.xml`,
 *   or any XML in a coverage or jacoco folder);
 * - logs/: `*.log` and MSBuild's `*.binlog`;
 * - builds/: everything else (.ipa, .apk, .aab, .app, .xcarchive, .exe, .dll, ...).
 */

export type Category = "builds" | "test-results" | "logs";

/** Directory artifacts: copied whole, never searched inside, complete once they have an Info.plist. */
export const BUNDLE_EXTENSIONS = [
  "xcarchive",
  "app",
  "xcresult",
  "dSYM",
  "framework",
  "xcframework",
  "appex",
];

/** What a finished artifact is, for choosing a watch hook. */
export type ArtifactType = "xcarchive" | "ipa" | "apk" | "aab" | "app" | "xcresult" | "other";

/** The artifact types `cal-sync watch` always knows, whatever the configured patterns. */
export const WATCHED_TYPES: ArtifactType[] = ["xcarchive", "ipa", "apk", "aab", "app", "xcresult"];

function escapeRegExp(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|/]/g, "\\$&");
}

/** One path segment of a glob (no `/`) as a regular expression source. */
function segmentSource(seg: string): string {
  let re = "";
  // Wildcards at the start of a name never match a leading dot.
  if (seg[0] === "*" || seg[0] === "?" || seg[0] === "[") re += "(?!\\.)";
  for (let i = 0; i < seg.length; i++) {
    const c = seg[i];
    if (c === "*") {
      while (seg[i + 1] === "*") i++;
      re += "[^/]*";
    } else if (c === "?") {
      re += "[^/]";
    } else if (c === "[") {
      const end = seg.indexOf("]", i + 2);
      if (end < 0) {
        re += "\\[";
        continue;
      }
      let body = seg.slice(i + 1, end);
      const negate = body[0] === "!" || body[0] === "^";
      if (negate) body = body.slice(1);
      re += `[${negate ? "^/" : ""}${body.replace(/[\\\]]/g, "\\$&")}]`;
      i = end;
    } else if (c === "{") {
      const end = seg.indexOf("}", i);
      if (end < 0) {
        re += "\\{";
        continue;
      }
      const alts = seg.slice(i + 1, end).split(",").map((a) =>
        segmentSource(a).replace(/^\(\?!\\\.\)/, "")
      );
      re += `(?:${alts.join("|")})`;
      i = end;
    } else {
      re += escapeRegExp(c);
    }
  }
  return re;
}

const NAME = "(?!\\.)[^/]+";

/** A glob's body (segments joined by `/`, `**` for any number of folders) as a regex source. */
function globSource(glob: string): string {
  const segs = glob.split("/");
  let re = "";
  for (let i = 0; i < segs.length; i++) {
    const seg = segs[i];
    const last = i === segs.length - 1;
    if (seg === "**") {
      // `a/**` needs at least one name below a; `**/b` and `a/**/b` allow none.
      if (last) re += i === 0 ? `${NAME}(?:/${NAME})*` : `(?:/${NAME})+`;
      else re += (i === 0 ? "" : "/") + `(?:${NAME}/)*`;
      continue;
    }
    const prev = segs[i - 1];
    if (i > 0 && prev !== "**") re += "/";
    re += segmentSource(seg);
  }
  return re;
}

export interface Matcher {
  pattern: string;
  test(rel: string): boolean;
}

/** Compiles one pattern with the rules above. */
export function compile(pattern: string): Matcher {
  let p = pattern.trim().replace(/^\.\//, "");
  while (p.length > 1 && p.endsWith("/")) p = p.slice(0, -1);
  const anchored = p.startsWith("/");
  if (anchored) p = p.slice(1);
  if (!p.includes("/")) {
    const re = new RegExp(`^${globSource(p)}$`);
    return anchored
      ? { pattern, test: (rel) => re.test(rel) }
      : { pattern, test: (rel) => re.test(baseName(rel)) };
  }
  // A leading `**/` is the default anyway.
  const re = new RegExp(`^${anchored ? "" : "(?:.*/)?"}${globSource(p)}$`);
  return { pattern, test: (rel) => re.test(rel) };
}

export function baseName(rel: string): string {
  const i = rel.lastIndexOf("/");
  return i < 0 ? rel : rel.slice(i + 1);
}

/** Whether a path or any folder above it matches one of the excludes. */
export function excluded(rel: string, excludes: Matcher[]): boolean {
  if (!excludes.length) return false;
  let prefix = rel;
  while (prefix) {
    if (excludes.some((m) => m.test(prefix))) return true;
    const i = prefix.lastIndexOf("/");
    prefix = i < 0 ? "" : prefix.slice(0, i);
  }
  return false;
}

/** Where a pattern came from, for messages and records. */
export interface PatternSource {
  pattern: string;
  /** "config" (output.watch_patterns) or an environment's name. */
  from: string;
}

export interface PatternSet {
  include: PatternSource[];
  exclude: PatternSource[];
}

/** A compiled pattern set: `match(rel)` is the first including pattern, unless excluded. */
export class Selector {
  private readonly include: { m: Matcher; from: string }[];
  private readonly exclude: Matcher[];

  constructor(set: PatternSet) {
    this.include = set.include.map((p) => ({ m: compile(p.pattern), from: p.from }));
    this.exclude = set.exclude.map((p) => compile(p.pattern));
  }

  match(rel: string): PatternSource | undefined {
    if (excluded(rel, this.exclude)) return undefined;
    const hit = this.include.find((i) => i.m.test(rel));
    return hit ? { pattern: hit.m.pattern, from: hit.from } : undefined;
  }
}

/** Merges the global patterns and the installed environments' `artifacts`, without repeats. */
export function patternSet(
  global: string[],
  environments: { name: string; artifacts?: { patterns: string[]; exclude?: string[] } }[],
): PatternSet {
  const include: PatternSource[] = [];
  const exclude: PatternSource[] = [];
  const seenI = new Set<string>();
  const seenE = new Set<string>();
  for (const p of global) {
    if (!seenI.has(p)) include.push({ pattern: p, from: "config" }), seenI.add(p);
  }
  for (const e of environments) {
    for (const p of e.artifacts?.patterns ?? []) {
      if (!seenI.has(p)) include.push({ pattern: p, from: e.name }), seenI.add(p);
    }
    for (const p of e.artifacts?.exclude ?? []) {
      if (!seenE.has(p)) exclude.push({ pattern: p, from: e.name }), seenE.add(p);
    }
  }
  return { include, exclude };
}

function extension(name: string): string {
  const i = name.lastIndexOf(".");
  return i <= 0 ? "" : name.slice(i + 1).toLowerCase();
}

/** Whether a folder's name makes it a bundle (an artifact copied whole). */
export function isBundleName(name: string): boolean {
  const ext = extension(name);
  return BUNDLE_EXTENSIONS.some((b) => b.toLowerCase() === ext);
}

const TEST_FOLDERS = new Set([
  "test-results",
  "surefire-reports",
  "failsafe-reports",
  "test-reports",
  "testresults",
  "junit",
]);
const COVERAGE_FOLDERS = new Set(["coverage", "jacoco"]);
/** Coverage reports by name: lcov, Clover, Cobertura, JaCoCo, Istanbul's JSON, coverage.py's. */
const COVERAGE_NAME =
  /^(?:lcov\.info|.+\.lcov|clover\.xml|coverage(?:-final|-summary)?\.(?:xml|json)|.*cobertura.*\.xml|jacoco.*\.xml)$/;

/** The host folder an artifact is sorted into. */
export function categoryOf(rel: string): Category {
  const name = baseName(rel);
  const lower = name.toLowerCase();
  const ext = extension(name);
  if (ext === "xcresult" || ext === "trx" || ext === "junit") return "test-results";
  if (COVERAGE_NAME.test(lower)) return "test-results";
  if (ext === "xml") {
    const folders = rel.split("/").slice(0, -1).map((s) => s.toLowerCase());
    if (
      /junit/.test(lower) || /^test-.*\.xml$/.test(lower) ||
      folders.some((f) => TEST_FOLDERS.has(f) || COVERAGE_FOLDERS.has(f))
    ) {
      return "test-results";
    }
  }
  if (ext === "log" || ext === "binlog") return "logs";
  return "builds";
}

/** The hook-relevant type of an artifact, from its name. */
export function artifactType(name: string): ArtifactType {
  const ext = extension(name);
  return (WATCHED_TYPES as string[]).includes(ext) ? ext as ArtifactType : "other";
}

/** A short, stable tag for a source path (to tell apart artifacts with the same name). */
export async function shortHash(text: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(text));
  return [...new Uint8Array(d)].slice(0, 3).map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The destination (relative to the output folder) for an artifact: `<category>/<name>`, or
 * `<category>/<stem>-<tag><ext>` when that name is taken by another source or by a file cal did
 * not put there (e.g. one the guest wrote through the shared folder).
 */
export async function destinationFor(
  source: string,
  rel: string,
  taken: (dest: string) => boolean,
): Promise<string> {
  const category = categoryOf(rel);
  const name = baseName(rel);
  const plain = `${category}/${name}`;
  if (!taken(plain)) return plain;
  const ext = extension(name);
  const stem = ext ? name.slice(0, -(ext.length + 1)) : name;
  return `${category}/${stem}-${await shortHash(source)}${ext ? "." + ext : ""}`;
}
