import { assertEquals, assertThrows } from "../../fixtures/assert.ts";
import { availableBytes, requireFreeSpace } from "../../../host/os/free_space.ts";
import { BangerError } from "../../../host/errors.ts";
import { run } from "../../../host/os/exec.ts";
import { gatedTest, programs } from "../../fixtures/requires.ts";

gatedTest("availableBytes() agrees with df's available bytes (df)", [programs("df")], async () => {
  const dir = await Deno.makeTempDir({ prefix: "bgt-free-" });
  try {
    const df = new TextDecoder().decode(
      (await run("df", ["-B1", "--output=avail", dir])).stdout,
    ).trim().split("\n").at(-1);
    const ours = availableBytes(dir);
    // Two readings a moment apart on a shared disk: the same within 256 MiB.
    assertEquals(Math.abs(ours - Number(df)) < 256 * 2 ** 20, true, `ours ${ours}, df ${df}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("requireFreeSpace() passes what fits and names both sizes when it does not", () => {
  requireFreeSpace("/tmp", 1, "one byte");
  const err = assertThrows(
    () => requireFreeSpace("/tmp", 2 ** 60, "a VM state"),
    BangerError,
    "Cannot write a VM state (1099511627776 MiB) to /tmp: only ",
  );
  assertEquals(err.code, "failed_precondition");
});
