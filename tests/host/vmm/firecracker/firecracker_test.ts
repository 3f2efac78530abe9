/**
 * The Firecracker process driver against the fake firecracker (simulated guest): launch,
 * configure, start, the bounded stop sequence, adoption, and survival of the launcher.
 */

import {
  Firecracker,
  type FirecrackerLaunchOptions,
} from "../../../../host/vmm/firecracker/firecracker.ts";
import { FirecrackerError } from "../../../../host/vmm/firecracker/api.ts";
import type { FirecrackerVmSpec } from "../../../../host/vmm/firecracker/config.ts";
import { renderKernelCmdline } from "../../../../host/vmm/kernel_cmdline.ts";
import { InProcessOps } from "../../../../host/privileged/in_process_ops.ts";
import { readProcFile } from "../../../../host/os/procfs.ts";
import {
  assert,
  assertEquals,
  assertRejects,
  assertStringIncludes,
} from "../../../fixtures/assert.ts";
import { FAKE_FIRECRACKER } from "../../../fixtures/fake_firecracker.ts";
import { elfExecutable } from "../../../fixtures/tiny_elf.ts";

/** `/proc` reads and signals for adopted VMMs: in-process, with the VM dirs under /tmp. */
const procs = new InProcessOps({ stateDir: "/tmp", cacheDir: "/tmp", runtimeDir: "/tmp" });

/** A temp VM directory whose VMM (if any) is SIGKILLed and directory removed on dispose. */
class TestVm implements AsyncDisposable {
  vmm?: Firecracker;
  private constructor(readonly dir: string) {}

  static async create(): Promise<TestVm> {
    return new TestVm(await Deno.makeTempDir({ dir: "/tmp", prefix: "bgt-fc-" }));
  }

  async launch(
    env: Record<string, string> = {},
    extra: Partial<FirecrackerLaunchOptions> = {},
  ): Promise<Firecracker> {
    this.vmm = await Firecracker.launch({
      binary: FAKE_FIRECRACKER,
      vmDir: this.dir,
      id: "test-vm",
      env,
      procs,
      ...extra,
    });
    return this.vmm;
  }

  async spec(): Promise<FirecrackerVmSpec> {
    await Deno.writeFile(`${this.dir}/vmlinux`, elfExecutable());
    await Deno.writeFile(`${this.dir}/root.ext4`, new Uint8Array(4096));
    await Deno.writeFile(`${this.dir}/work.ext4`, new Uint8Array(4096));
    return {
      vmDir: this.dir,
      kernelPath: `${this.dir}/vmlinux`,
      bootArgs: renderKernelCmdline({ vmm: "firecracker", firecrackerVersion: "1.16.1" }),
      rootDisk: `${this.dir}/root.ext4`,
      workDisk: `${this.dir}/work.ext4`,
      vcpuCount: 2,
      memSizeMib: 256,
      vsockCid: 3,
    };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    const vmm = this.vmm ?? await Firecracker.adopt(this.dir, { procs });
    if (vmm && await vmm.kill("SIGKILL")) await vmm.waitForExit(5000);
    await Deno.remove(this.dir, { recursive: true });
  }
}

Deno.test("Firecracker.launch() → configure() → start() boots; stop() ends it with SendCtrlAltDel", async () => {
  await using vm = await TestVm.create();
  const vmm = await vm.launch();
  await vmm.configure(await vm.spec());
  assertEquals((await vmm.client.getInstanceInfo()).state, "Not started");
  await vmm.start();
  assertEquals((await vmm.client.getInstanceInfo()).state, "Running");
  const result = await vmm.stop({ exitWaitMs: 0 });
  assertEquals(result.endedBy, "ctrl-alt-del");
  assertEquals(result.exit, { code: 0, signal: null });
  assertEquals(await vmm.isRunning(), false);
  for (const gone of ["fc.sock", "vsock.sock", "vmm.pid"]) {
    await assertRejects(() => Deno.lstat(`${vm.dir}/${gone}`), Deno.errors.NotFound);
  }
  assertStringIncludes(
    await Deno.readTextFile(`${vm.dir}/serial.log`),
    "reboot: Restarting system",
  );
  assertStringIncludes(await Deno.readTextFile(`${vm.dir}/vmm.log`), 'Put request on "/actions"');
});

Deno.test("Firecracker boots on every supported release: 1.8 and 1.13 open log and metrics without creating them", async (t) => {
  for (const version of ["1.8.0", "1.13.0", "1.14.0", "1.16.1"]) {
    await t.step(version, async () => {
      await using vm = await TestVm.create();
      const vmm = await vm.launch({ FAKE_FC_VERSION: version });
      const spec = await vm.spec();
      spec.bootArgs = renderKernelCmdline({ vmm: "firecracker", firecrackerVersion: version });
      await vmm.configure(spec);
      await vmm.start();
      const cmdline = /Command line: (.*)/.exec(await Deno.readTextFile(`${vm.dir}/serial.log`))
        ?.[1] ?? "";
      assertEquals(cmdline.split(" ").filter((a) => a === "pci=off").length, 1, cmdline);
      assertEquals(cmdline.includes("i8042.nopnp"), false, "keyboard PnP stays on");
      assertStringIncludes(await Deno.readTextFile(`${vm.dir}/vmm.log`), "InstanceStart");
    });
  }
});

Deno.test("Firecracker.stop() reports 'exit' when the guest already rebooted on its own", async () => {
  await using vm = await TestVm.create();
  const vmm = await vm.launch();
  await vmm.configure(await vm.spec());
  await vmm.start();
  await vmm.client.putAction("SendCtrlAltDel"); // stands in for `reboot` over SSH
  const result = await vmm.stop({ exitWaitMs: 10_000 });
  assertEquals(result.endedBy, "exit");
  assertEquals(result.notes, []);
});

Deno.test("Firecracker.stop() falls back to SIGKILL when the guest ignores Ctrl+Alt+Del", async () => {
  await using vm = await TestVm.create();
  const vmm = await vm.launch({ FAKE_FC_IGNORE_CTRL_ALT_DEL: "1" });
  await vmm.configure(await vm.spec());
  await vmm.start();
  const result = await vmm.stop({ exitWaitMs: 0, ctrlAltDelWaitMs: 200, killWaitMs: 5000 });
  assertEquals(result.endedBy, "sigkill");
  assertEquals(result.exit?.signal, "SIGKILL");
  assertEquals(await vmm.isRunning(), false);
});

Deno.test("Firecracker.stop() of a VMM that never booted skips the refused Ctrl+Alt+Del and kills it", async () => {
  await using vm = await TestVm.create();
  const vmm = await vm.launch();
  const result = await vmm.stop({ exitWaitMs: 0 });
  assertEquals(result.endedBy, "sigkill");
  assertEquals(result.notes.length, 1);
  assertStringIncludes(
    result.notes[0],
    "The requested operation is not supported before starting the microVM.",
  );
});

Deno.test("Firecracker.configure() surfaces Firecracker's fault_message on a refused call", async () => {
  await using vm = await TestVm.create();
  const vmm = await vm.launch({
    FAKE_FC_FAIL_AT: "PUT /drives/work",
    FAKE_FC_FAULT_MESSAGE: "work disk refused",
  });
  const err = await assertRejects(async () => vmm.configure(await vm.spec()), FirecrackerError);
  assertEquals(err.faultMessage, "work disk refused");
  assertEquals(err.status, 400);
  assertEquals(err.message, "Cannot PUT /drives/work on Firecracker: work disk refused");
});

Deno.test("Firecracker.launch() times out, naming the wait, when the API socket never answers", async () => {
  await using vm = await TestVm.create();
  const err = await assertRejects(
    () => vm.launch({ FAKE_FC_FAIL_AT: "no-api-socket" }, { apiTimeoutMs: 300 }),
    FirecrackerError,
    "did not answer within 300 ms",
  );
  assertEquals(err.code, "timeout");
  assertEquals(
    await Firecracker.adopt(vm.dir, { procs }),
    undefined,
    "the half-started VMM was killed",
  );
});

Deno.test("Firecracker.launch() reports an early exit with the end of the serial log", async () => {
  await using vm = await TestVm.create();
  const err = await assertRejects(
    () => vm.launch({ FAKE_FC_FAIL_AT: "startup" }),
    FirecrackerError,
  );
  assertEquals(err.code, "failed_precondition");
  assertStringIncludes(err.message, "it exited with code 1 before its API socket answered");
  assertStringIncludes(err.message, "Injected startup failure");
});

Deno.test("Firecracker.launch() of a missing binary fails with the shell's reason", async () => {
  await using vm = await TestVm.create();
  const err = await assertRejects(
    () =>
      Firecracker.launch({
        binary: `${vm.dir}/no-such-firecracker`,
        vmDir: vm.dir,
        id: "x",
        procs,
      }),
    FirecrackerError,
  );
  assertStringIncludes(err.message, "code 127");
  assertStringIncludes(err.message, "not found");
});

Deno.test("Firecracker.launch() rejects an instance id outside 1–64 of [A-Za-z0-9-]", async () => {
  for (const id of ["", "a_b", "x".repeat(65), "a b"]) {
    await assertRejects(
      () => Firecracker.launch({ binary: FAKE_FIRECRACKER, vmDir: "/nonexistent", id, procs }),
      FirecrackerError,
      "instance id",
    );
  }
});

Deno.test("Firecracker.launch() removes stale sockets and refuses a VMM already running for the dir", async () => {
  await using vm = await TestVm.create();
  for (const stale of ["fc.sock", "vsock.sock"]) {
    await Deno.writeFile(`${vm.dir}/${stale}`, new Uint8Array());
  }
  const vmm = await vm.launch();
  await vmm.configure(await vm.spec()); // binds vsock.sock, which was stale
  const err = await assertRejects(
    () => Firecracker.launch({ binary: FAKE_FIRECRACKER, vmDir: vm.dir, id: "again", procs }),
    FirecrackerError,
  );
  assertEquals(err.code, "conflict");
  assertEquals(await vmm.isRunning(), true);
});

Deno.test("Firecracker.launch() runs the VMM in its own session with umask 077", async () => {
  await using vm = await TestVm.create();
  const vmm = await vm.launch();
  await vmm.configure(await vm.spec());
  const stat = readProcFile(`/proc/${vmm.pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  assertEquals(Number(fields[3]), vmm.pid, "session id is its own pid (setsid)");
  for (const file of ["vmm.log", "metrics.json", "serial.log", "vmm.pid"]) {
    assertEquals(
      ((await Deno.stat(`${vm.dir}/${file}`)).mode ?? 0) & 0o077,
      0,
      `${file} is private`,
    );
  }
  assertEquals(Number(await Deno.readTextFile(`${vm.dir}/vmm.pid`)), vmm.pid);
});

Deno.test("Firecracker.adopt() finds the VMM by pidfile and stops it by polling", async () => {
  await using vm = await TestVm.create();
  const launched = await vm.launch();
  await launched.configure(await vm.spec());
  await launched.start();
  const adopted = await Firecracker.adopt(vm.dir, { procs });
  assert(adopted, "adopted");
  assertEquals(adopted.pid, launched.pid);
  assertEquals((await adopted.client.getInstanceInfo()).state, "Running");
  const result = await adopted.stop({ exitWaitMs: 0 });
  assertEquals(result.endedBy, "ctrl-alt-del");
  assertEquals(result.exit, undefined, "an adopted VMM's exit status is unknown");
  assertEquals(await Firecracker.adopt(vm.dir, { procs }), undefined);
});

Deno.test("Firecracker.adopt() ignores a pidfile whose pid is not our VMM", async () => {
  await using vm = await TestVm.create();
  await Deno.writeTextFile(`${vm.dir}/vmm.pid`, `${Deno.pid}\n`);
  assertEquals(await Firecracker.adopt(vm.dir, { procs }), undefined);
});

Deno.test("Firecracker.kill() signals a running VMM and reports false once it is gone", async () => {
  await using vm = await TestVm.create();
  const vmm = await vm.launch();
  assertEquals(await vmm.kill("SIGTERM"), true);
  assert(await vmm.waitForExit(5000));
  assertEquals(vmm.exitStatus?.signal, "SIGTERM");
  assertEquals(await vmm.kill(), false);
});

Deno.test("Firecracker.readMetrics() parses the last line after FlushMetrics", async () => {
  await using vm = await TestVm.create();
  const vmm = await vm.launch();
  await vmm.configure(await vm.spec());
  assertEquals(await vmm.readMetrics(), undefined);
  await vmm.start();
  await vmm.client.putAction("FlushMetrics");
  const metrics = await vmm.readMetrics();
  assertEquals(metrics?.block["block_rootfs"]?.readBytes, 4096);
  assert(metrics?.block["block_work"], "per-drive group for the work disk");
});

Deno.test("Firecracker VMM survives the death of the process that launched it", async () => {
  await using vm = await TestVm.create();
  const script = `${vm.dir}/launcher.ts`;
  const host = new URL("../../../../host/vmm/firecracker/firecracker.ts", import.meta.url).href;
  const ops = new URL("../../../../host/privileged/in_process_ops.ts", import.meta.url).href;
  await Deno.writeTextFile(
    script,
    `import { Firecracker } from ${JSON.stringify(host)};
import { InProcessOps } from ${JSON.stringify(ops)};
const procs = new InProcessOps({ stateDir: "/tmp", cacheDir: "/tmp", runtimeDir: "/tmp" });
const vmm = await Firecracker.launch({ binary: ${JSON.stringify(FAKE_FIRECRACKER)}, vmDir: ${
      JSON.stringify(vm.dir)
    }, id: "orphan", procs });
await Deno.stdout.write(new TextEncoder().encode(String(vmm.pid)));
`,
  );
  const out = await new Deno.Command(Deno.execPath(), { args: ["run", "-A", "--no-lock", script] })
    .output();
  assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
  const pid = Number(new TextDecoder().decode(out.stdout));
  const adopted = await Firecracker.adopt(vm.dir, { procs });
  assert(adopted, "the VMM outlived its launcher");
  assertEquals(adopted.pid, pid);
  assertEquals((await adopted.client.getInstanceInfo()).id, "orphan");
  assertEquals((await adopted.stop({ exitWaitMs: 0, ctrlAltDelWaitMs: 0 })).endedBy, "sigkill");
});
