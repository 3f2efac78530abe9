/**
 * Fuzzes every RPC method's request schema through a real `RpcServer` on a unix socket,
 * with stub handlers that only record calls: valid bodies (found from the schemas) and
 * seeded mutations of them. The server must never answer 5xx; a body the schema refuses
 * must get a 4xx JSON error with a message and never reach its handler; a body it accepts
 * must reach the handler exactly as parsed.
 */
import { METHODS } from "../../../daemon/api/mod.ts";
import { Logger } from "../../../daemon/logger.ts";
import type { Handlers } from "../../../daemon/rpc/server.ts";
import { RpcServer } from "../../../daemon/rpc/server.ts";
import { assert, assertEquals } from "../../fixtures/assert.ts";
import { discoverValid, fuzzSeed, mutatedBodies, seededRandom } from "../../fixtures/fuzz.ts";

const STRINGS = ["dev", "debian", "1G", "a1", "firecracker", "172.16.0.9", "/tmp/x"];
const seed = fuzzSeed();

Deno.test(`RpcServer rejects every invalid body of every method with a typed 4xx and never calls its handler (seed ${seed})`, async () => {
  const dir = await Deno.makeTempDir();
  const socketPath = `${dir}/d.sock`;
  const calls: { method: string; request: unknown }[] = [];
  const handlers = Object.fromEntries(
    Object.keys(METHODS).map((name) => [name, (request: unknown) => {
      calls.push({ method: name, request });
      return Promise.resolve({});
    }]),
  ) as unknown as Handlers<typeof METHODS>;
  const server = new RpcServer({
    socketPath,
    methods: METHODS,
    handlers,
    logger: new Logger({ write: () => {} }, "error"),
    version: "fuzz",
  });
  await server.listen();
  const client = Deno.createHttpClient({ proxy: { transport: "unix", path: socketPath } });
  const rng = seededRandom(seed);
  let accepted = 0;
  let rejected = 0;
  try {
    for (const [name, def] of Object.entries(METHODS)) {
      const valid = discoverValid(def.request, (_p, _e, i) => STRINGS[i % STRINGS.length]);
      assert(valid !== undefined, `found a valid body for ${name}`);
      for (const body of [JSON.stringify(valid), ...mutatedBodies(valid, rng, 25)]) {
        let parsed: unknown;
        let ok = true;
        try {
          parsed = def.request.parse(JSON.parse(body === "" ? "{}" : body), "");
        } catch {
          ok = false;
        }
        const before = calls.length;
        const res = await fetch(`http://localhost/v1/${name}`, { method: "POST", body, client });
        const text = await res.text();
        const where = `${name} ${body.slice(0, 120)} → ${res.status} ${text.slice(0, 200)}`;
        assert(res.status < 500, where);
        if (ok) {
          accepted++;
          assertEquals(res.status, 200, where);
          assertEquals(calls.length, before + 1, where);
          assertEquals(calls[before].request, parsed, where);
        } else {
          rejected++;
          assert(res.status >= 400, where);
          const err = JSON.parse(text);
          assert(typeof err.message === "string" && err.message.length > 0, where);
          assert(["bad_request", "invalid_argument", "too_large"].includes(err.code), where);
          assertEquals(calls.length, before, `${where}: the handler must not run`);
        }
      }
    }
    const huge = await fetch("http://localhost/v1/vm.list", {
      method: "POST",
      body: "x".repeat(2 * 1024 * 1024),
      client,
    });
    assertEquals([huge.status, (await huge.json()).code], [413, "too_large"]);
  } finally {
    client.close();
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
  assert(accepted > 0 && rejected > accepted, `accepted ${accepted}, rejected ${rejected}`);
});
