/**
 * YAML files read and validated with errors that point at file:line:column.
 *
 * Syntax errors come from the `yaml` parser's positions; schema errors from zod issues mapped
 * back onto the document's nodes. Writes are atomic (see `store.ts`).
 */

import { isMap, isNode, isSeq, LineCounter, parseDocument, stringify } from "yaml";
import type { z } from "zod";
import { CalError, ExitCode } from "./errors.ts";

export class InvalidFile extends CalError {
  constructor(readonly file: string, readonly line: number, readonly col: number, detail: string) {
    super(`${file}:${line}:${col}: ${detail}`, {
      code: "invalid-config",
      exit: ExitCode.usage,
      hint: `Fix ${file} at line ${line}, column ${col}, then run the command again.`,
    });
  }
}

type Path = (string | number)[];

/** Parses YAML text and validates it with `schema`, reporting problems at their position. */
export function parseYaml<S extends z.ZodType>(
  text: string,
  file: string,
  schema: S,
): z.infer<S> {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const first = doc.errors[0];
  if (first) {
    const pos = lc.linePos(first.pos[0]);
    throw new InvalidFile(file, pos.line, pos.col, first.message.split("\n")[0]);
  }
  const data = doc.toJS() ?? {};
  const result = schema.safeParse(data);
  if (result.success) return result.data;

  const issue = result.error.issues[0];
  const path = issue.path.filter((p): p is string | number => typeof p !== "symbol");
  const { line, col } = positionOf(doc, lc, path, issue);
  const where = path.length ? path.join(".") : "(top level)";
  throw new InvalidFile(file, line, col, `${where}: ${describeIssue(issue, schema, path)}`);
}

function positionOf(
  doc: ReturnType<typeof parseDocument>,
  lc: LineCounter,
  path: Path,
  issue: z.core.$ZodIssue,
): { line: number; col: number } {
  // An unknown or malformed key is reported on the key itself.
  const key = issue.code === "unrecognized_keys"
    ? { parent: path, name: issue.keys[0] }
    : issue.code === "invalid_key" && path.length
    ? { parent: path.slice(0, -1), name: String(path[path.length - 1]) }
    : undefined;
  if (key?.name !== undefined) {
    const parent = key.parent.length ? doc.getIn(key.parent, true) : doc.contents;
    if (isMap(parent)) {
      const pair = parent.items.find((p) =>
        isNode(p.key) ? String((p.key as { value?: unknown }).value) === key.name : false
      );
      if (pair && isNode(pair.key) && pair.key.range) return lc.linePos(pair.key.range[0]);
    }
  }
  for (let n = path.length; n >= 0; n--) {
    const node = n === 0 ? doc.contents : doc.getIn(path.slice(0, n), true);
    if (isNode(node) && node.range) {
      // For a map value, point at its key when the value itself is missing or a collection.
      return lc.linePos(node.range[0]);
    }
    if (n > 0 && !isSeq(node)) continue;
  }
  return { line: 1, col: 1 };
}

function describeIssue(issue: z.core.$ZodIssue, schema: z.ZodType, path: Path): string {
  if (issue.code === "unrecognized_keys") {
    const allowed = allowedKeys(schema, path);
    return `unknown key ${issue.keys.map((k) => `"${k}"`).join(", ")}` +
      (allowed?.length ? ` (allowed: ${allowed.join(", ")})` : "");
  }
  if (issue.code === "invalid_key") {
    // zod says "Invalid key in record"; the key's own rule says what a key must look like.
    const rule = issue.issues[0]?.message;
    const key = `"${String(path[path.length - 1])}"`;
    return rule && /^an? /.test(rule) ? `${key} is not ${rule}` : `${key} is not a valid key` +
      (rule ? ` (${rule})` : "");
  }
  return issue.message;
}

type Def = { type: string; shape?: Record<string, unknown>; [k: string]: unknown };
const defOf = (s: unknown): Def | undefined => (s as { _zod?: { def: Def } })?._zod?.def;

/** The keys an object schema allows at `path`, to list them next to an unknown key. */
function allowedKeys(schema: unknown, path: Path): string[] {
  let node = schema;
  const unwrap = () => {
    for (let d = defOf(node); d && ["optional", "default", "nullable", "pipe"].includes(d.type);) {
      node = d.type === "pipe" ? d.in : d.innerType;
      d = defOf(node);
    }
  };
  for (const step of path) {
    unwrap();
    const d = defOf(node);
    if (!d) return [];
    if (d.type === "object") node = d.shape?.[String(step)];
    else if (d.type === "array") node = d.element;
    else if (d.type === "record") node = d.valueType;
    else return [];
  }
  unwrap();
  const d = defOf(node);
  return d?.type === "object" && d.shape ? Object.keys(d.shape) : [];
}

/** Reads and validates a YAML file; a missing file yields `undefined`. */
export async function readYamlFile<S extends z.ZodType>(
  file: string,
  schema: S,
): Promise<z.infer<S> | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
  return parseYaml(text, file, schema);
}

export function toYaml(data: unknown): string {
  return stringify(data, { lineWidth: 0 });
}
