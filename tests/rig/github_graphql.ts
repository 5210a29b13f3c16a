/**
 * A small GraphQL parser and executor for the GitHub stand-in (tests/rig/github.ts).
 *
 * It is schema-less: a query is resolved against plain objects whose properties are values or
 * (possibly async) functions `(args, info) => value`. Only the fields a query selects come back,
 * which matters because gh decodes many responses with shurcooL-graphql, whose decoder rejects
 * fields it did not ask for. Supported: operations (query/mutation, named or shorthand), variables
 * with defaults, aliases, arguments (every literal kind), nested selections, fragment spreads,
 * inline fragments (`... on Type`, matched against `__typename` / `__implements`), `@include` and
 * `@skip`. A field the objects do not define resolves to null and is reported through `onUnknown`.
 * A resolver that throws {@link GraphQLError} nulls its field and adds an entry to `errors`.
 */

// deno-lint-ignore no-explicit-any
export type Json = any;

/** Thrown by a resolver: becomes `{ message, type, path }` in the response's `errors`. */
export class GraphQLError extends Error {
  constructor(message: string, readonly type?: string) {
    super(message);
  }
}

type Value =
  | { kind: "var"; name: string }
  | { kind: "lit"; value: Json }
  | { kind: "list"; items: Value[] }
  | { kind: "obj"; fields: [string, Value][] };

interface Directive {
  name: string;
  args: [string, Value][];
}

type Selection =
  | {
    kind: "field";
    alias?: string;
    name: string;
    args: [string, Value][];
    directives: Directive[];
    selections?: Selection[];
  }
  | { kind: "spread"; name: string; directives: Directive[] }
  | { kind: "inline"; on?: string; directives: Directive[]; selections: Selection[] };

interface Operation {
  type: "query" | "mutation" | "subscription";
  name?: string;
  vars: { name: string; default?: Value }[];
  selections: Selection[];
}

interface Fragment {
  name: string;
  on: string;
  selections: Selection[];
}

export interface Document {
  operations: Operation[];
  fragments: Map<string, Fragment>;
}

type Tok = { t: "punct" | "name" | "int" | "float" | "string"; v: string };

function lex(src: string): Tok[] {
  const out: Tok[] = [];
  let i = 0;
  const n = src.length;
  while (i < n) {
    const c = src[i];
    if (c === "#") {
      while (i < n && src[i] !== "\n" && src[i] !== "\r") i++;
    } else if (/[\s,\ufeff]/.test(c)) {
      i++;
    } else if (src.startsWith("...", i)) {
      out.push({ t: "punct", v: "..." });
      i += 3;
    } else if ("!$&()[]{}:=@|".includes(c)) {
      out.push({ t: "punct", v: c });
      i++;
    } else if (/[A-Za-z_]/.test(c)) {
      const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(src.slice(i))!;
      out.push({ t: "name", v: m[0] });
      i += m[0].length;
    } else if (/[-0-9]/.test(c)) {
      const m = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(src.slice(i));
      if (!m) throw new GraphQLError(`Syntax error: unexpected "${c}"`);
      out.push({ t: m[2] || m[3] ? "float" : "int", v: m[0] });
      i += m[0].length;
    } else if (src.startsWith('"""', i)) {
      const end = src.indexOf('"""', i + 3);
      if (end < 0) throw new GraphQLError("Syntax error: unterminated block string");
      out.push({ t: "string", v: blockString(src.slice(i + 3, end).replaceAll('\\"""', '"""')) });
      i = end + 3;
    } else if (c === '"') {
      let j = i + 1;
      let s = "";
      while (j < n && src[j] !== '"') {
        if (src[j] === "\\") {
          const e = src[j + 1];
          if (e === "u") {
            s += String.fromCharCode(parseInt(src.slice(j + 2, j + 6), 16));
            j += 6;
            continue;
          }
          s += ({ n: "\n", t: "\t", r: "\r", b: "\b", f: "\f" } as Record<string, string>)[e] ?? e;
          j += 2;
        } else {
          s += src[j++];
        }
      }
      if (j >= n) throw new GraphQLError("Syntax error: unterminated string");
      out.push({ t: "string", v: s });
      i = j + 1;
    } else {
      throw new GraphQLError(`Syntax error: unexpected character "${c}"`);
    }
  }
  return out;
}

function blockString(raw: string): string {
  const lines = raw.split(/\r\n|\n|\r/);
  let indent = Infinity;
  for (const l of lines.slice(1)) {
    const m = /^[ \t]*/.exec(l)![0].length;
    if (m < l.length) indent = Math.min(indent, m);
  }
  const out = lines.map((l, i) => (i === 0 || indent === Infinity ? l : l.slice(indent)));
  while (out.length && !out[0].trim()) out.shift();
  while (out.length && !out[out.length - 1].trim()) out.pop();
  return out.join("\n");
}

/** Parses a GraphQL document; throws {@link GraphQLError} on a syntax error. */
export function parse(src: string): Document {
  const toks = lex(src);
  let p = 0;
  const peek = (v?: string) => toks[p] && (v === undefined || toks[p].v === v) ? toks[p] : null;
  const next = () => {
    const t = toks[p++];
    if (!t) throw new GraphQLError("Syntax error: unexpected end of document");
    return t;
  };
  const expect = (v: string) => {
    const t = next();
    if (t.v !== v) throw new GraphQLError(`Syntax error: expected "${v}", found "${t.v}"`);
    return t;
  };
  const name = () => {
    const t = next();
    if (t.t !== "name") throw new GraphQLError(`Syntax error: expected a name, found "${t.v}"`);
    return t.v;
  };

  const value = (): Value => {
    const t = next();
    if (t.t === "punct" && t.v === "$") return { kind: "var", name: name() };
    if (t.t === "punct" && t.v === "[") {
      const items: Value[] = [];
      while (!peek("]")) items.push(value());
      expect("]");
      return { kind: "list", items };
    }
    if (t.t === "punct" && t.v === "{") {
      const fields: [string, Value][] = [];
      while (!peek("}")) {
        const k = name();
        expect(":");
        fields.push([k, value()]);
      }
      expect("}");
      return { kind: "obj", fields };
    }
    if (t.t === "int") return { kind: "lit", value: parseInt(t.v, 10) };
    if (t.t === "float") return { kind: "lit", value: parseFloat(t.v) };
    if (t.t === "string") return { kind: "lit", value: t.v };
    if (t.t === "name") {
      if (t.v === "true") return { kind: "lit", value: true };
      if (t.v === "false") return { kind: "lit", value: false };
      if (t.v === "null") return { kind: "lit", value: null };
      return { kind: "lit", value: t.v }; // enum value
    }
    throw new GraphQLError(`Syntax error: unexpected "${t.v}"`);
  };
  const args = (): [string, Value][] => {
    const out: [string, Value][] = [];
    if (!peek("(")) return out;
    next();
    while (!peek(")")) {
      const k = name();
      expect(":");
      out.push([k, value()]);
    }
    expect(")");
    return out;
  };
  const directives = (): Directive[] => {
    const out: Directive[] = [];
    while (peek("@")) {
      next();
      out.push({ name: name(), args: args() });
    }
    return out;
  };
  const type = (): void => {
    if (peek("[")) {
      next();
      type();
      expect("]");
    } else name();
    if (peek("!")) next();
  };
  const selectionSet = (): Selection[] => {
    expect("{");
    const out: Selection[] = [];
    while (!peek("}")) {
      if (peek("...")) {
        next();
        if (peek("on")) {
          next();
          const on = name();
          out.push({ kind: "inline", on, directives: directives(), selections: selectionSet() });
        } else if (peek("{") || peek("@")) {
          out.push({ kind: "inline", directives: directives(), selections: selectionSet() });
        } else {
          out.push({ kind: "spread", name: name(), directives: directives() });
        }
        continue;
      }
      let fieldName = name();
      let alias: string | undefined;
      if (peek(":")) {
        next();
        alias = fieldName;
        fieldName = name();
      }
      const a = args();
      const d = directives();
      out.push({
        kind: "field",
        alias,
        name: fieldName,
        args: a,
        directives: d,
        selections: peek("{") ? selectionSet() : undefined,
      });
    }
    expect("}");
    return out;
  };

  const doc: Document = { operations: [], fragments: new Map() };
  while (p < toks.length) {
    if (peek("{")) {
      doc.operations.push({ type: "query", vars: [], selections: selectionSet() });
      continue;
    }
    const kw = name();
    if (kw === "fragment") {
      const fname = name();
      expect("on");
      const on = name();
      directives();
      doc.fragments.set(fname, { name: fname, on, selections: selectionSet() });
    } else if (kw === "query" || kw === "mutation" || kw === "subscription") {
      const op: Operation = { type: kw, vars: [], selections: [] };
      if (peek()?.t === "name") op.name = name();
      if (peek("(")) {
        next();
        while (!peek(")")) {
          expect("$");
          const vname = name();
          expect(":");
          type();
          let def: Value | undefined;
          if (peek("=")) {
            next();
            def = value();
          }
          directives();
          op.vars.push({ name: vname, default: def });
        }
        expect(")");
      }
      directives();
      op.selections = selectionSet();
      doc.operations.push(op);
    } else {
      throw new GraphQLError(`Syntax error: unexpected "${kw}"`);
    }
  }
  return doc;
}

export interface ExecuteOptions {
  query: string;
  variables?: Record<string, Json> | null;
  operationName?: string | null;
  /** Root objects: `query` for queries, `mutation` for mutations. */
  roots: { query: Json; mutation: Json };
  /** Called with the dotted path of each field no object defines. */
  onUnknown?: (path: string, typename: string | undefined) => void;
}

export interface ExecuteResult {
  body: { data?: Json; errors?: Json[] };
  operationName?: string;
  operationType?: string;
  /** Top-level field names the operation selected (e.g. `repository`, `createPullRequest`). */
  rootFields: string[];
}

/** Runs one operation of `query` against `roots`; never throws for GraphQL-level errors. */
export async function execute(o: ExecuteOptions): Promise<ExecuteResult> {
  let doc: Document;
  try {
    doc = parse(o.query);
  } catch (e) {
    return { body: { errors: [{ message: (e as Error).message }] }, rootFields: [] };
  }
  const op = o.operationName
    ? doc.operations.find((x) => x.name === o.operationName)
    : doc.operations[0];
  if (!op) {
    return {
      body: { errors: [{ message: `Unknown operation named "${o.operationName ?? ""}".` }] },
      rootFields: [],
    };
  }
  const vars: Record<string, Json> = {};
  for (const v of op.vars) {
    if (o.variables && v.name in o.variables) vars[v.name] = o.variables[v.name];
    else if (v.default) vars[v.name] = evalValue(v.default, {});
  }
  const errors: Json[] = [];
  const root = op.type === "mutation" ? o.roots.mutation : o.roots.query;
  const rootFields: string[] = [];
  for (const s of op.selections) if (s.kind === "field") rootFields.push(s.name);

  const included = (ds: Directive[]) => {
    for (const d of ds) {
      const a = Object.fromEntries(d.args.map(([k, v]) => [k, evalValue(v, vars)]));
      if (d.name === "include" && !a.if) return false;
      if (d.name === "skip" && a.if) return false;
    }
    return true;
  };
  const typeMatches = (obj: Json, on: string | undefined) => {
    if (!on) return true;
    const tn = obj?.__typename;
    if (tn === undefined || tn === on) return true;
    return Array.isArray(obj.__implements) && obj.__implements.includes(on);
  };

  const resolveObject = async (
    obj: Json,
    sels: Selection[],
    path: (string | number)[],
    out: Record<string, Json> = {},
  ): Promise<Record<string, Json>> => {
    for (const s of sels) {
      if (!included(s.directives)) continue;
      if (s.kind === "spread") {
        const f = doc.fragments.get(s.name);
        if (!f) {
          errors.push({ message: `Unknown fragment "${s.name}".`, path });
          continue;
        }
        if (typeMatches(obj, f.on)) await resolveObject(obj, f.selections, path, out);
        continue;
      }
      if (s.kind === "inline") {
        if (typeMatches(obj, s.on)) await resolveObject(obj, s.selections, path, out);
        continue;
      }
      const key = s.alias ?? s.name;
      const fpath = [...path, key];
      if (s.name === "__typename") {
        out[key] = obj?.__typename ?? null;
        continue;
      }
      let v: Json;
      if (obj === null || typeof obj !== "object" || !(s.name in obj)) {
        o.onUnknown?.(fpath.join("."), obj?.__typename);
        v = null;
      } else {
        v = obj[s.name];
        if (typeof v === "function") {
          const a = Object.fromEntries(s.args.map(([k, x]) => [k, evalValue(x, vars)]));
          try {
            v = await v.call(obj, a, { path: fpath });
          } catch (e) {
            if (!(e instanceof GraphQLError)) throw e;
            errors.push({
              ...(e.type ? { type: e.type } : {}),
              path: fpath,
              locations: [],
              message: e.message,
            });
            v = null;
          }
        } else {
          v = await v;
        }
      }
      out[key] = await complete(v, s.selections, fpath);
    }
    return out;
  };
  const complete = async (
    v: Json,
    sels: Selection[] | undefined,
    path: (string | number)[],
  ): Promise<Json> => {
    v = await v;
    if (v === null || v === undefined) return null;
    if (Array.isArray(v)) return Promise.all(v.map((x, i) => complete(x, sels, [...path, i])));
    if (!sels) return typeof v === "object" && !(v instanceof Date) ? structuredClone(v) : v;
    return resolveObject(v, sels, path);
  };

  const data = await resolveObject(root, op.selections, []);
  return {
    body: errors.length ? { data, errors } : { data },
    operationName: op.name,
    operationType: op.type,
    rootFields,
  };
}

function evalValue(v: Value, vars: Record<string, Json>): Json {
  switch (v.kind) {
    case "var":
      return vars[v.name] ?? null;
    case "lit":
      return v.value;
    case "list":
      return v.items.map((x) => evalValue(x, vars));
    case "obj":
      return Object.fromEntries(v.fields.map(([k, x]) => [k, evalValue(x, vars)]));
  }
}
