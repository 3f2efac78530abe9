/**
 * WorkspaceService against the in-process daemon (simulated guests in a netns): its
 * locks (DESIGN.md invariant 5), dry runs, and exec's command line and refusals. Guest
 * I/O goes through the GuestShell seam: a blocking fake, or a local directory.
 */
import { git } from "../../fixtures/git.ts";
import {
  assert,
  assertEquals,
  assertRejects,
  assertStringIncludes,
  within,
} from "../../fixtures/assert.ts";
import { BlockingShell, LocalShell } from "../../fixtures/guest_shell.ts";
import { gatedTest, programs, root } from "../../fixtures/requires.ts";
import { type VmHarness, vmHarness } from "../../fixtures/vm_harness.ts";
import type { GuestShell } from "../../../daemon/workspace/_shell.ts";
import type { OpContext } from "../../../daemon/rpc/server.ts";
import { WorkspaceService } from "../../../daemon/workspace/workspace_service.ts";
import { VmStateError } from "../../../daemon/vm/vm_service.ts";

const needs = [root(), programs("ip", "nft", "mkfs.ext4", "debugfs", "git", "tar")];

async function tempRepo(): Promise<{ dir: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "bg-wsrepo-" });
  await git(dir, "init", "-q", "-b", "main");
  await Deno.writeTextFile(`${dir}/a.txt`, "a\n");
  await git(dir, "add", "a.txt");
  await git(dir, "commit", "-q", "-m", "one");
  return {
    dir,
    async [Symbol.asyncDispose]() {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

function service(h: VmHarness, shell: GuestShell): WorkspaceService {
  return new WorkspaceService({
    vms: h.services.vms,
    vmDeps: h.services.vmDeps,
    shell: () => shell,
  });
}

/** A context whose progress events resolve waiters for a stage. */
function watchedCtx(
  h: VmHarness,
): { ctx: OpContext; stage(name: string, count: number): Promise<void> } {
  const base = h.ctx();
  const seen = new Map<string, number>();
  const waiters: { name: string; count: number; resolve: () => void }[] = [];
  const ctx: OpContext = {
    ...base,
    progress(stage) {
      seen.set(stage, (seen.get(stage) ?? 0) + 1);
      for (const w of waiters) {
        if (w.name === stage && (seen.get(stage) ?? 0) >= w.count) w.resolve();
      }
    },
  };
  return {
    ctx,
    stage(name, count) {
      if ((seen.get(name) ?? 0) >= count) return Promise.resolve();
      const w = Promise.withResolvers<void>();
      waiters.push({ name, count, resolve: w.resolve });
      return w.promise;
    },
  };
}

gatedTest(
  "WorkspaceService.prepare() stalled in guest I/O does not block vm stop on the same VM (root, netns)",
  needs,
  async () => {
    await using h = await vmHarness();
    await using repo = await tempRepo();
    const vm = await h.services.vms.create({ name: "stall" }, h.ctx());
    using shell = new BlockingShell();
    const ws = service(h, shell);
    const preparing = ws.prepare({ ref: "stall", hostPath: repo.dir, mode: "full_copy" }, h.ctx());
    await within(shell.entered(1), 60_000, "the first prepare in guest I/O");
    assert(ws.workspaceLocks.isLocked(vm.id), "the import holds the workspace lock");
    assert(!h.services.vms.vmLocks.isLocked(vm.id), "…and not the VM lock");
    // With the import stalled at the seam, stop takes the VM lock and finishes.
    const [stopped] = await h.services.vms.stop(["stall"], h.ctx());
    assertEquals(stopped.vm?.status, "stopped", String(stopped.error));
    shell.release();
    const result = await within(preparing, 60_000, "the released prepare");
    assertEquals(result.base_commit, "f".repeat(40));
    const row = h.services.vms.find("stall");
    assertEquals([row.status, row.workspace?.guestPath], ["stopped", "/root/repo"]);
  },
);

gatedTest(
  "WorkspaceService.prepare() three at once on one VM run one at a time (root, netns)",
  needs,
  async () => {
    await using h = await vmHarness();
    await using repo = await tempRepo();
    await h.services.vms.create({ name: "busy" }, h.ctx());
    using shell = new BlockingShell();
    const ws = service(h, shell);
    const req = { ref: "busy", hostPath: repo.dir, mode: "full_copy" as const };
    const first = ws.prepare(req, h.ctx());
    await within(shell.entered(1), 60_000, "the first prepare in guest I/O");
    const watch = watchedCtx(h);
    const others = [ws.prepare(req, watch.ctx), ws.prepare(req, watch.ctx)];
    // Both plan, then queue on the workspace lock behind the stalled first one; without
    // the lock, a second would reach the seam instead (and fail the count below).
    await within(
      Promise.race([watch.stage("workspace_wait", 2), shell.entered(2)]),
      60_000,
      "two more prepares queued (or one in guest I/O)",
    );
    assertEquals(shell.active, 1, "only the first prepare is in guest I/O");
    shell.release();
    await within(Promise.all([first, ...others]), 60_000, "all three prepares");
    assertEquals(shell.maxActive, 1, "never two guest commands at once");
    assertEquals(shell.started, 9, "three prepares of three guest steps each");
  },
);

gatedTest(
  "WorkspaceService.prepare() dry run lists files and touches no guest; exec refuses a stopped VM (root, netns)",
  needs,
  async (t) => {
    await using h = await vmHarness();
    await using repo = await tempRepo();
    await Deno.writeTextFile(`${repo.dir}/untracked.txt`, "u\n");
    await h.services.vms.create({ name: "dry", no_start: true }, h.ctx());
    const shell = new LocalShell();
    const ws = service(h, shell);
    const guest = `${repo.dir}-guest`;
    await t.step("dry run", async () => {
      const r = await ws.prepare(
        { ref: "dry", hostPath: repo.dir, dryRun: true, guestPath: guest },
        h.ctx(),
      );
      assertEquals([r.dry_run, r.files, r.file_count], [true, ["a.txt"], 1]);
      assertEquals(shell.calls, [], "no guest command ran");
      await Deno.stat(guest).then(() => assert(false, "guest dir created"), () => {});
      assertEquals(h.services.vms.find("dry").workspace, undefined, "nothing recorded");
    });
    await t.step("refusals on a VM that is not running", async () => {
      await assertRejects(
        () => ws.prepare({ ref: "dry", hostPath: repo.dir }, h.ctx()),
        VmStateError,
        `Cannot prepare a workspace in "dry": VM is created`,
      );
      await assertRejects(
        () => ws.exec({ ref: "dry", command: ["true"] }, h.ctx()),
        VmStateError,
        `Cannot run a command in "dry": VM is created`,
      );
      await assertRejects(() => ws.export({ ref: "dry" }, h.ctx()), VmStateError);
    });
  },
);

gatedTest(
  "WorkspaceService.exec() runs in the workspace with the command quoted, and warns when the host HEAD moved (root, netns)",
  needs,
  async () => {
    await using h = await vmHarness();
    await using repo = await tempRepo();
    await h.services.vms.create({ name: "runner" }, h.ctx());
    using shell = new BlockingShell();
    shell.release();
    const ws = service(h, shell);
    const plain = await ws.exec({ ref: "runner", command: ["sh", "-c", "exit 42"] }, h.ctx());
    assertEquals(plain.guestPath, "/root", "no workspace: root's home");
    assertEquals(plain.warnings, []);
    const remote = plain.argv.at(-1) ?? "";
    assertStringIncludes(remote, `banger-exec /root sh -c 'exit 42'`);
    await ws.prepare({ ref: "runner", hostPath: repo.dir, mode: "full_copy" }, h.ctx());
    const inRepo = await ws.exec({ ref: "runner", command: ["make", "test"] }, h.ctx());
    assertEquals([inRepo.guestPath, inRepo.warnings], ["/root/repo", []]);
    await Deno.writeTextFile(`${repo.dir}/b.txt`, "b\n");
    await git(repo.dir, "add", "b.txt");
    await git(repo.dir, "commit", "-q", "-m", "two");
    const moved = await ws.exec({ ref: "runner", command: ["make", "test"] }, h.ctx());
    assertEquals(moved.warnings.length, 1);
    assertStringIncludes(moved.warnings[0], "--auto-prepare");
    const synced = await ws.exec(
      { ref: "runner", command: ["make", "test"], autoPrepare: true },
      h.ctx(),
    );
    assertEquals(synced.warnings, []);
    assertEquals(synced.vm.workspace?.hostHead, await git(repo.dir, "rev-parse", "HEAD"));
  },
);
