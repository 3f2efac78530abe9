import { assert, assertEquals, assertMatch, assertStringIncludes } from "../../fixtures/assert.ts";
import { Logger } from "../../../daemon/logger.ts";
import {
  MAX_BODY_BYTES,
  method,
  methodTable,
  VERSION_HEADER,
} from "../../../daemon/api/protocol.ts";
import { type Handlers, RpcServer } from "../../../daemon/rpc/server.ts";
import { BangerError } from "../../../host/errors.ts";
import * as s from "../../../host/schema.ts";
import { lines, postJson, readAllText } from "../../../host/net/http_unix.ts";

const TEST_METHODS = methodTable(
  method(
    "test.echo",
    s.object({ name: s.string({ min: 1 }), count: s.optional(s.number({ int: true, min: 1 })) }),
    s.object({ greeting: s.string() }),
  ),
  method("test.wait", s.object({}), s.object({})),
  method(
    "test.stream",
    s.object({ steps: s.number({ int: true }) }),
    s.object({ done: s.boolean() }),
    {
      stream: true,
    },
  ),
  method("test.conflict", s.object({}), s.object({})),
);

interface Harness extends AsyncDisposable {
  socket: string;
  logLines: string[];
  /** Resolves when a handler saw its signal abort, with the abort reason's message. */
  aborted: Promise<string>;
  /** Resolves when test.wait / test.stream started. */
  started: Promise<void>;
}

async function harness(): Promise<Harness> {
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "bg-rpc-" });
  const socket = `${dir}/d.sock`;
  const logLines: string[] = [];
  const logger = new Logger({ write: (l) => void logLines.push(l) }, "debug");
  const aborted = Promise.withResolvers<string>();
  const started = Promise.withResolvers<void>();
  const waitForAbort = (signal: AbortSignal) =>
    new Promise<never>((_, reject) => {
      started.resolve();
      signal.addEventListener("abort", () => {
        aborted.resolve(String((signal.reason as Error)?.message));
        reject(signal.reason);
      });
    });
  const handlers: Handlers<typeof TEST_METHODS> = {
    "test.echo": (req, ctx) => {
      ctx.log.info("echoing", { name: req.name });
      return Promise.resolve({ greeting: `hi ${req.name}`.repeat(req.count ?? 1) });
    },
    "test.wait": (_req, ctx) => waitForAbort(ctx.signal),
    "test.stream": async (req, ctx) => {
      for (let i = 0; i < req.steps; i++) {
        ctx.progress("step", `step ${i}`, { done: i, total: req.steps });
      }
      await waitForAbort(ctx.signal);
      return { done: true };
    },
    "test.conflict": () => {
      throw new BangerError('Cannot create VM "dev": the name is taken', {
        code: "conflict",
        hint: "pick another --name",
      });
    },
  };
  const server = new RpcServer({
    socketPath: socket,
    methods: TEST_METHODS,
    handlers,
    logger,
    version: "9.9.9",
  });
  await server.listen();
  return {
    socket,
    logLines,
    aborted: aborted.promise,
    started: started.promise,
    async [Symbol.asyncDispose]() {
      await server.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

async function post(
  socket: string,
  path: string,
  body: string,
  headers: Record<string, string> = {},
) {
  const res = await postJson(socket, path, body, headers);
  const text = await readAllText(res.body);
  return { status: res.status, headers: res.headers, json: JSON.parse(text) };
}

Deno.test("RpcServer answers a valid call with the handler's result and the daemon's version", async () => {
  await using h = await harness();
  const r = await post(h.socket, "/v1/test.echo", JSON.stringify({ name: "ada" }));
  assertEquals(r.status, 200);
  assertEquals(r.json, { greeting: "hi ada" });
  assertEquals(r.headers.get(VERSION_HEADER), "9.9.9");
  const opId = r.headers.get("x-banger-op-id") ?? "";
  assertMatch(opId, /^op-[0-9a-f]{8}$/);
  assert(
    h.logLines.some((l) => l.includes(`"op_id":"${opId}"`) && l.includes("echoing")),
    "handler log lines carry the op_id",
  );
});

Deno.test("RpcServer gives the documented status and message for each bad request", async (t) => {
  await using h = await harness();
  await t.step("bad JSON → 400", async () => {
    const r = await post(h.socket, "/v1/test.echo", "{not json");
    assertEquals(r.status, 400);
    assertEquals(r.json.code, "bad_request");
    assertStringIncludes(r.json.message, "Cannot parse request body as JSON");
    assertMatch(r.json.op_id, /^op-/);
  });
  await t.step("schema violation → 400 naming the field", async () => {
    const r = await post(h.socket, "/v1/test.echo", JSON.stringify({ name: "", count: 0 }));
    assertEquals(r.status, 400);
    assertStringIncludes(r.json.message, `Invalid request: "name" must be a string`);
  });
  await t.step("unknown field → 400", async () => {
    const r = await post(h.socket, "/v1/test.echo", JSON.stringify({ name: "a", colour: 1 }));
    assertEquals(r.status, 400);
    assertStringIncludes(r.json.message, `"colour" is not a known field`);
  });
  await t.step("oversized body → 413", async () => {
    const r = await post(
      h.socket,
      "/v1/test.echo",
      JSON.stringify({ name: "x".repeat(MAX_BODY_BYTES) }),
    );
    assertEquals(r.status, 413);
    assertEquals(r.json.code, "too_large");
    assertStringIncludes(r.json.message, `larger than ${MAX_BODY_BYTES} bytes`);
  });
  await t.step("unknown method → 404", async () => {
    const r = await post(h.socket, "/v1/vm.frobnicate", "{}");
    assertEquals(r.status, 404);
    assertEquals(r.json.code, "unknown_method");
    assertEquals(r.json.message, `Unknown method "vm.frobnicate"`);
  });
  await t.step("conflict from a handler → 409 with hint", async () => {
    const r = await post(h.socket, "/v1/test.conflict", "{}");
    assertEquals(r.status, 409);
    assertEquals(r.json.hint, "pick another --name");
  });
  await t.step("client of another version → 409 version_mismatch", async () => {
    const r = await post(h.socket, "/v1/test.echo", JSON.stringify({ name: "a" }), {
      [VERSION_HEADER]: "1.0.0",
    });
    assertEquals(r.status, 409);
    assertEquals(r.json.code, "version_mismatch");
  });
});

Deno.test("RpcServer aborts a unary handler's signal when the client disconnects mid-request", async () => {
  await using h = await harness();
  const controller = new AbortController();
  const call = postJson(h.socket, "/v1/test.wait", "{}", {}, controller.signal).catch((e) => e);
  await h.started;
  controller.abort(new Error("user pressed ^C"));
  await call;
  assertEquals(await h.aborted, "The client disconnected");
});

Deno.test("RpcServer streams progress as NDJSON and aborts the handler when the reader goes away", async () => {
  await using h = await harness();
  const res = await postJson(h.socket, "/v1/test.stream", JSON.stringify({ steps: 3 }), {});
  assertEquals(res.headers.get("content-type"), "application/x-ndjson");
  const events = [];
  for await (const line of lines(res.body)) {
    events.push(JSON.parse(line));
    if (events.length === 3) break; // leaving the loop closes the connection
  }
  assertEquals(events.map((e) => [e.event, e.stage, e.message, e.done, e.total]), [
    ["progress", "step", "step 0", 0, 3],
    ["progress", "step", "step 1", 1, 3],
    ["progress", "step", "step 2", 2, 3],
  ]);
  assertEquals(await h.aborted, "The client disconnected");
});
