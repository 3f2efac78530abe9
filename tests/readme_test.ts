/** Keeps the README honest: the CI command and the configuration reference. */
import { assert } from "./fixtures/assert.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const readme = Deno.readTextFileSync(`${ROOT}README.md`);

Deno.test(".ci/run runs exactly the README's test command", () => {
  const blocks = [...readme.matchAll(/```sh\n([^`]+)```/g)].map((m) => m[1].trim());
  const testCommand = blocks[1];
  assert(testCommand, "the README's second sh block is the test command");
  const ci = Deno.readTextFileSync(`${ROOT}.ci/run`);
  const lastLine = ci.trim().split("\n").at(-1);
  assert(lastLine === testCommand, `.ci/run ends with "${lastLine}", README says "${testCommand}"`);
});

Deno.test("the README's first command works as written on a fresh root Debian machine (no sudo)", () => {
  const first = [...readme.matchAll(/```sh\n([^`]+)```/g)].map((m) => m[1].trim())[0] ?? "";
  assert(first.includes("./setup.sh") && !/\bsudo\b/.test(first), first);
});

Deno.test("the README documents every config key", async () => {
  const source = await Deno.readTextFile(`${ROOT}daemon/config.ts`);
  const schema = source.slice(
    source.indexOf("const fileSchema"),
    source.indexOf("function parseListen"),
  );
  const keys = [...schema.matchAll(/^\s+([a-z_]+): s\./gm)].map((m) => m[1]);
  assert(keys.length > 15, `found only ${keys.length} keys`);
  for (const key of keys) {
    assert(new RegExp(`[\\[\` ]${key}[\\]\`]`).test(readme), `README misses config key ${key}`);
  }
});
