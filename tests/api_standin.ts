/**
 * Test helpers for key swapping: a local HTTPS stand-in of an agent's API on a loopback address
 * of its own (port 443, as the real one), a minimal Messages API, and a look into every guest
 * process's environment.
 */

import type { MitmCA } from "@anthropic-ai/sandbox-runtime/dist/sandbox/mitm-ca.js";
import { mintLeafCert } from "@anthropic-ai/sandbox-runtime/dist/sandbox/mitm-leaf.js";

/** A loopback address of this test's own (port 443 on it is free). */
export function ownLoopback(): string {
  const b = crypto.getRandomValues(new Uint8Array(2));
  return `127.${100 + (b[0] % 100)}.${b[1]}.${1 + (b[0] % 250)}`;
}

/** A local HTTPS server for `names`, with a CA of its own; records what it received. */
export function fakeApi(
  ca: MitmCA,
  address: string,
  names: string[],
  handler: (req: Request) => Response | Promise<Response>,
) {
  const leaf = mintLeafCert(ca, names[0]);
  return Deno.serve(
    { hostname: address, port: 443, cert: leaf.certPem, key: leaf.keyPem, onListen() {} },
    handler,
  );
}

/** A minimal Messages API: a streamed or whole reply, whatever is asked. */
export function messagesReply(body: Record<string, unknown>): Response {
  const model = typeof body.model === "string" ? body.model : "claude-stand-in";
  const text = "Hello from the Messages API stand-in.";
  const usage = { input_tokens: 12, output_tokens: 8 };
  if (!body.stream) {
    return Response.json({
      id: "msg_standin",
      type: "message",
      role: "assistant",
      model,
      content: [{ type: "text", text }],
      stop_reason: "end_turn",
      stop_sequence: null,
      usage,
    });
  }
  const events: [string, unknown][] = [
    ["message_start", {
      type: "message_start",
      message: {
        id: "msg_standin",
        type: "message",
        role: "assistant",
        model,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: { input_tokens: 12, output_tokens: 1 },
      },
    }],
    ["content_block_start", {
      type: "content_block_start",
      index: 0,
      content_block: { type: "text", text: "" },
    }],
    ["content_block_delta", {
      type: "content_block_delta",
      index: 0,
      delta: { type: "text_delta", text },
    }],
    ["content_block_stop", { type: "content_block_stop", index: 0 }],
    ["message_delta", {
      type: "message_delta",
      delta: { stop_reason: "end_turn", stop_sequence: null },
      usage: { output_tokens: 8 },
    }],
    ["message_stop", { type: "message_stop" }],
  ];
  const sse = events.map(([e, d]) => `event: ${e}\ndata: ${JSON.stringify(d)}\n\n`).join("");
  return new Response(sse, {
    headers: { "content-type": "text/event-stream", "cache-control": "no-cache" },
  });
}

/** Every process outside this host's pid namespace (the guests') whose environment holds `needle`. */
export async function guestEnvironsWith(
  needle: string,
): Promise<{ scanned: number; hits: number[] }> {
  const own = await Deno.readLink("/proc/self/ns/pid");
  let scanned = 0;
  const hits: number[] = [];
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      if ((await Deno.readLink(`/proc/${e.name}/ns/pid`)) === own) continue;
      const env = await Deno.readFile(`/proc/${e.name}/environ`);
      scanned++;
      if (new TextDecoder().decode(env).includes(needle)) hits.push(Number(e.name));
    } catch { /* gone, or a kernel thread */ }
  }
  return { scanned, hits };
}

/** A value that satisfies a (Gemini-style) JSON schema, as small as it can be. */
function fromSchema(schema: Record<string, unknown> | undefined): unknown {
  if (!schema) return {};
  if (Array.isArray(schema.enum) && schema.enum.length) return schema.enum[0];
  switch (String(schema.type ?? "object").toLowerCase()) {
    case "string":
      return "stand-in";
    case "integer":
    case "number":
      return 10;
    case "boolean":
      return false;
    case "array":
      return [];
    default: {
      const props = (schema.properties ?? {}) as Record<string, Record<string, unknown>>;
      const req = Array.isArray(schema.required) ? schema.required as string[] : Object.keys(props);
      return Object.fromEntries(req.map((k) => [k, fromSchema(props[k])]));
    }
  }
}

/**
 * A minimal Gemini API: generateContent (streamed as SSE or whole) answering `text`, or JSON
 * that fits the request's response schema when it asks for one; countTokens.
 */
export function geminiReply(path: string, body: Record<string, unknown>, text: string): Response {
  if (path.endsWith(":countTokens")) return Response.json({ totalTokens: 12 });
  const config = (body.generationConfig ?? {}) as Record<string, unknown>;
  const schema = (config.responseJsonSchema ?? config.responseSchema) as
    | Record<string, unknown>
    | undefined;
  const answer = config.responseMimeType === "application/json"
    ? JSON.stringify(fromSchema(schema))
    : text;
  const chunk = {
    candidates: [{
      content: { parts: [{ text: answer }], role: "model" },
      finishReason: "STOP",
      index: 0,
    }],
    usageMetadata: { promptTokenCount: 12, candidatesTokenCount: 8, totalTokenCount: 20 },
    modelVersion: "gemini-stand-in",
  };
  if (path.endsWith(":streamGenerateContent")) {
    return new Response(`data: ${JSON.stringify(chunk)}\r\n\r\n`, {
      headers: { "content-type": "text/event-stream" },
    });
  }
  return Response.json(chunk);
}
