import { BangerError } from "../../../host/errors.ts";
import { InProcessOps } from "../../../host/privileged/in_process_ops.ts";
import {
  parseProcStat,
  processArgv,
  processRunning,
  readProcOf,
  signalName,
  signalNumber,
} from "../../../host/os/process.ts";
import { assert, assertEquals, assertRejects } from "../../fixtures/assert.ts";

const procs = new InProcessOps({ stateDir: "/tmp", cacheDir: "/tmp", runtimeDir: "/tmp" });

Deno.test("signalName() canonicalises known names and refuses others", () => {
  assertEquals(signalName("kill"), "SIGKILL");
  assertEquals(signalName("SIGTERM"), "SIGTERM");
  assertEquals(signalName("sigusr1"), "SIGUSR1");
  assertEquals(signalName("SIGSEGV"), undefined);
  assertEquals(signalName(""), undefined);
  assertEquals(signalNumber("TERM"), 15);
});

Deno.test("parseProcStat() counts fields from the last ')' of a name with spaces", () => {
  const stat = "42 (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0";
  assertEquals(parseProcStat(stat), { state: "S", utimeTicks: 7, stimeTicks: 3 });
  assertEquals(parseProcStat("not a stat line"), undefined);
  assertEquals(parseProcStat(`${Deno.pid} (deno) `), undefined);
});

Deno.test("processRunning() and processArgv() read this process through PrivilegedOps", async () => {
  assert(await processRunning(procs, Deno.pid));
  const argv = await processArgv(procs, Deno.pid);
  assert((argv ?? []).includes("test"), `deno test argv: ${argv}`);
});

Deno.test("processRunning() is false and processArgv() undefined for a process that is gone", async () => {
  const child = new Deno.Command("true").spawn();
  await child.status;
  assertEquals(await processRunning(procs, child.pid), false);
  assertEquals(await processArgv(procs, child.pid), undefined);
});

Deno.test("readProcOf() rethrows a failure that is not 'not found' (never mistaken for gone)", async () => {
  const down = {
    readProcFile: () =>
      Promise.reject(new BangerError("Cannot reach the root helper", { code: "unavailable" })),
  };
  const err = await assertRejects(() => readProcOf(down, Deno.pid, "stat"), BangerError);
  assertEquals(err.code, "unavailable");
  await assertRejects(() => processRunning(down, Deno.pid), BangerError);
});
