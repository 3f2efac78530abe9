import { Logger } from "../../daemon/logger.ts";
import { assert, assertEquals } from "../fixtures/assert.ts";

const lines = (text: string) => text.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l));

Deno.test("Logger.toFile() writes JSON lines with op_id fields, appending to what is there", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/daemon.log`;
    await Deno.writeTextFile(path, '{"msg":"earlier"}\n');
    const log = Logger.toFile(path, "info");
    log.debug("dropped");
    log.child({ op_id: "op-1" }).info("vm started", { vm: "dev" });
    const got = lines(await Deno.readTextFile(path));
    assertEquals(got.map((l) => l.msg), ["earlier", "vm started"]);
    assertEquals([got[1].op_id, got[1].vm, got[1].level], ["op-1", "dev", "info"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Logger.toFile() rotates past its size to <path>.1, keeping one 0600 generation and whole lines", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/daemon.log`;
    const log = Logger.toFile(path, "info", 4096);
    for (let i = 0; i < 200; i++) log.info("line", { i, pad: "x".repeat(40) });
    const current = lines(await Deno.readTextFile(path));
    const previous = lines(await Deno.readTextFile(`${path}.1`));
    for (const f of [path, `${path}.1`]) {
      const size = (await Deno.stat(f)).size;
      assert(size > 0 && size <= 4096, `${f}: ${size} bytes`);
      assertEquals(((await Deno.stat(f)).mode ?? 0) & 0o777, 0o600, f);
    }
    // The newest lines are in the current file, directly after those in <path>.1.
    const seen = [...previous, ...current].map((l) => l.i);
    assertEquals(seen.at(-1), 199);
    assertEquals(seen, seen.map((_, k) => seen[0] + k), "consecutive, none torn or lost");
    assert(seen[0] > 0, "older generations are dropped");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
