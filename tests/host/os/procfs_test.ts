import { assert, assertEquals, assertThrows } from "../../fixtures/assert.ts";
import { LibcError } from "../../../host/os/libc.ts";
import { listProcDir, readProcFile, readProcFileIfExists } from "../../../host/os/procfs.ts";

Deno.test("readProcFile() reads /proc/self/stat whose reported size is 0", () => {
  const stat = readProcFile(`/proc/${Deno.pid}/stat`);
  assert(stat.startsWith(`${Deno.pid} (`), stat.slice(0, 40));
});

Deno.test("readProcFile() honours maxBytes", () => {
  assertEquals(readProcFile("/proc/self/status", 4).length, 4);
});

Deno.test("readProcFileIfExists() returns undefined for a missing file and throws otherwise", () => {
  assertEquals(readProcFileIfExists("/proc/banger-nope"), undefined);
  assertThrows(() => readProcFileIfExists("/proc/self/mem/x"), LibcError);
});

Deno.test("listProcDir() lists /sys, which Deno's readDir refuses, without . and ..", () => {
  const names = listProcDir("/sys/class").map((e) => e.name);
  assert(names.includes("net"), "expected /sys/class/net");
  assert(!names.includes(".") && !names.includes(".."));
  assertEquals(listProcDir("/sys/class").find((e) => e.name === "net")?.type, 4, "DT_DIR");
  assertThrows(() => listProcDir("/sys/banger-nope"), LibcError);
});
