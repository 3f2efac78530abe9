/** The smoke runner itself: it can fail, and it never passes having run nothing. */
import { assertEquals, assertStringIncludes } from "../fixtures/assert.ts";

const MAIN = new URL("../../smoke/main.ts", import.meta.url).pathname;

async function smoke(args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, ...args],
    env,
    stdin: "null",
  }).output();
  return { code: out.code, stdout: new TextDecoder().decode(out.stdout) };
}

Deno.test("smoke fails, naming what is missing and the fix, when a required tool is absent", async () => {
  // An empty PATH hides every host program the scenarios need.
  const r = await smoke(["--scenario", "exit_code"], { PATH: "/nonexistent" });
  assertEquals(r.code, 1, r.stdout);
  assertStringIncludes(r.stdout, "MISSING");
  assertStringIncludes(r.stdout, "0 passed, 0 failed, 1 skipped: smoke cannot run here");
  assertStringIncludes(r.stdout, "run ./setup.sh");
});

Deno.test("smoke refuses an unknown scenario instead of running none", async () => {
  const r = await smoke(["--scenario", "no_such_scenario"]);
  assertEquals(r.code, 2);
});
