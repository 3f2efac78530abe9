/**
 * Snapshot generations on disk: each new one above all present, valid only once committed (a crash before
 * the manifest leaves nothing a restore would take), pruned but for what is kept, and a
 * restore refused on any difference it would not survive.
 */
import { assert, assertEquals } from "../../fixtures/assert.ts";
import {
  allocateGeneration,
  commitSnapshot,
  latestSnapshot,
  pruneSnapshots,
  restoreProblem,
  type RestoreTarget,
  restoreTargetSchema,
  type SnapshotManifest,
  snapshotsDir,
} from "../../../daemon/vm/snapshots.ts";

const TARGET: RestoreTarget = {
  vmm: "qemu",
  vmm_version: "7.2.0",
  host_kernel: "6.1.0-28-cloud-amd64",
  cpu_model: "AMD EPYC",
  vcpu: 2,
  memory_mib: 1024,
  kernel: "debian-6.1",
  cmdline: "console=ttyS0",
};

function manifest(generation: number): SnapshotManifest {
  return { generation, vm_id: "abc", created_at: "2026-12-04T00:00:00Z", bytes: 1, target: TARGET };
}

Deno.test("a new snapshot generation is above every one present, and only a committed one is taken", async () => {
  const vmDir = await Deno.makeTempDir({ prefix: "bgt-snaps-" });
  try {
    assertEquals(await latestSnapshot(vmDir), undefined, "none yet");
    const first = await allocateGeneration(vmDir);
    await Deno.writeTextFile(`${first.dir}/state`, "one");
    await commitSnapshot(first.dir, manifest(first.generation));
    // The daemon dies after writing the state of the second, before its manifest.
    const torn = await allocateGeneration(vmDir);
    await Deno.writeTextFile(`${torn.dir}/state`, "half");
    assertEquals((await latestSnapshot(vmDir))?.generation, first.generation);
    // A manifest that does not parse is no commit either.
    await Deno.writeTextFile(`${torn.dir}/manifest.json`, "{");
    assertEquals((await latestSnapshot(vmDir))?.generation, first.generation);
    // Racing allocations each get a fresh number, above the torn one too.
    const [a, b] = await Promise.all([allocateGeneration(vmDir), allocateGeneration(vmDir)]);
    assertEquals([a.generation, b.generation].sort(), [3, 4]);
    assertEquals(await pruneSnapshots(vmDir, [first.generation]), [2, 3, 4]);
    const dirs = [];
    for await (const e of Deno.readDir(snapshotsDir(vmDir))) dirs.push(e.name);
    assertEquals(dirs, ["1"]);
    const next = await allocateGeneration(vmDir);
    assertEquals(next.generation, 2, "numbers above what is left; 1 is never written again");
    assertEquals(await Deno.readTextFile(`${first.dir}/state`), "one");
  } finally {
    await Deno.remove(vmDir, { recursive: true });
  }
});

Deno.test("restoreProblem() names each difference a restore would not survive", () => {
  assertEquals(restoreProblem(TARGET, { ...TARGET }), undefined);
  const keys = Object.keys(restoreTargetSchema.json.properties as Record<string, unknown>);
  assert(keys.length >= 8, keys.join());
  for (const key of keys) {
    const changed = {
      ...TARGET,
      [key]: typeof TARGET[key as keyof RestoreTarget] === "number" ? 99 : "other",
    };
    const problem = restoreProblem(TARGET, changed as RestoreTarget);
    assert(problem?.includes(`with ${key} `), `${key}: ${problem}`);
  }
});
