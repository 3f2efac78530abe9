import { assert, assertEquals, assertStringIncludes } from "../fixtures/assert.ts";
import { runDoctor } from "../../daemon/doctor.ts";
import { resolveLayout } from "../../host/layout.ts";
import { Store } from "../../store/db.ts";
import { LATEST_VERSION } from "../../store/migrations.ts";
import { runBanger } from "../fixtures/banger_cli.ts";

async function tempHome(): Promise<{ home: string } & AsyncDisposable> {
  const home = await Deno.makeTempDir({ dir: "/tmp", prefix: "bg-doc-" });
  return { home, [Symbol.asyncDispose]: () => Deno.remove(home, { recursive: true }) };
}

Deno.test("runDoctor() gives every check a status, and a fix for each WARN or FAIL", async () => {
  await using t = await tempHome();
  const report = await runDoctor(resolveLayout({ BANGER_HOME: t.home }, 0, false), {
    home: t.home,
  });
  const names = report.checks.map((c) => c.name);
  for (
    const expected of [
      "architecture",
      "kvm",
      "firecracker",
      "vmm",
      "root disks",
      "loop",
      "tun",
      "vhost-vsock",
      "nft",
      "ip",
      "mkfs.ext4",
      "debugfs",
      "e2fsck",
      "ssh",
      "ssh-keygen",
      "git",
      "store",
      "runtime dir",
    ]
  ) {
    assert(names.includes(expected), `missing check "${expected}" in ${names}`);
  }
  for (const c of report.checks) {
    if (c.status !== "PASS") assert(c.fix && c.fix.length > 0, `${c.name} has no fix`);
  }
  const dm = report.checks.find((c) => c.name === "root disks");
  let hasDm = true;
  try {
    Deno.statSync("/dev/mapper/control");
  } catch {
    hasDm = false;
  }
  assertEquals(dm?.status, hasDm ? "PASS" : "WARN");
});

Deno.test("runDoctor() never creates banger's directories or the store", async () => {
  await using t = await tempHome();
  await runDoctor(resolveLayout({ BANGER_HOME: t.home }, 0, false), { home: t.home });
  const entries = [...Deno.readDirSync(t.home)].map((e) => e.name);
  assertEquals(entries, []);
});

Deno.test("`banger doctor` exits 1 and names the problem for a store newer than the binary", async () => {
  await using t = await tempHome();
  await Deno.mkdir(`${t.home}/state`, { recursive: true, mode: 0o700 });
  {
    using store = Store.open(`${t.home}/state/banger.db`);
    store.write((d) =>
      d.prepare(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'future', 'now')",
      )
        .run(LATEST_VERSION + 5)
    );
  }
  const r = await runBanger(["doctor", "--json"], { env: { BANGER_HOME: t.home } });
  assertEquals(r.code, 1, r.stderr);
  const report = JSON.parse(r.stdout);
  assertEquals(report.ok, false);
  const store = report.checks.find((c: { name: string }) => c.name === "store");
  assertEquals(store.status, "FAIL");
  assertStringIncludes(store.detail, `schema ${LATEST_VERSION + 5}, newer than this banger`);
});

Deno.test("`banger doctor` fails a group-writable runtime dir and a bad config", async () => {
  await using t = await tempHome();
  await Deno.mkdir(`${t.home}/run`, { mode: 0o700 });
  await Deno.chmod(`${t.home}/run`, 0o775);
  await Deno.mkdir(`${t.home}/config`, { mode: 0o700 });
  await Deno.writeTextFile(`${t.home}/config/config.toml`, `vmm = "bochs"\n`);
  const r = await runBanger(["doctor", "--json"], { env: { BANGER_HOME: t.home } });
  assertEquals(r.code, 1);
  const checks = JSON.parse(r.stdout).checks as { name: string; status: string; detail: string }[];
  const run = checks.find((c) => c.name === "runtime dir");
  assertEquals(run?.status, "FAIL");
  assertStringIncludes(run?.detail ?? "", "writable by its group");
  const config = checks.find((c) => c.name === "config");
  assertEquals(config?.status, "FAIL");
  assertStringIncludes(config?.detail ?? "", `key "vmm" must be one of`);
});

/** A home whose config points at stand-in firecracker and jailer binaries of given versions. */
async function firecrackerHome(
  home: string,
  o: { vmm: string; firecracker: string; jailer?: string },
): Promise<void> {
  const bin = async (name: string, banner: string) => {
    await Deno.writeTextFile(`${home}/${name}`, `#!/bin/sh\necho "${banner}"\n`, { mode: 0o755 });
    return `${home}/${name}`;
  };
  const lines = [
    `vmm = "${o.vmm}"`,
    `firecracker_bin = "${await bin("firecracker", `Firecracker v${o.firecracker}`)}"`,
  ];
  if (o.jailer) lines.push(`jailer_bin = "${await bin("jailer", `Jailer v${o.jailer}`)}"`);
  await Deno.mkdir(`${home}/config`, { mode: 0o700 });
  await Deno.writeTextFile(`${home}/config/config.toml`, lines.join("\n") + "\n");
}

Deno.test("runDoctor() refuses a Firecracker older than v1.8.0 with the found version, the minimum and how to upgrade", async (t) => {
  for (const [vmm, status] of [["auto", "WARN"], ["firecracker", "FAIL"]] as const) {
    await t.step(`vmm = "${vmm}"`, async () => {
      await using h = await tempHome();
      await firecrackerHome(h.home, { vmm, firecracker: "1.7.0" });
      const report = await runDoctor(resolveLayout({ BANGER_HOME: h.home }, 0, false), {
        home: h.home,
      });
      const fc = report.checks.find((c) => c.name === "firecracker");
      assertEquals(fc?.status, status);
      assertStringIncludes(fc?.detail ?? "", "is v1.7.0, older than v1.8.0");
      assertStringIncludes(fc?.fix ?? "", "install Firecracker v1.8.0 or newer");
      if (vmm === "auto") {
        const choice = report.checks.find((c) => c.name === "vmm");
        assertStringIncludes(choice?.detail ?? "", "qemu");
      }
    });
  }
});

Deno.test("runDoctor() shows the Firecracker and jailer versions and fails when they differ", async () => {
  await using same = await tempHome();
  await firecrackerHome(same.home, { vmm: "auto", firecracker: "1.14.1", jailer: "1.14.1" });
  let report = await runDoctor(resolveLayout({ BANGER_HOME: same.home }, 0, false), {
    home: same.home,
  });
  let fc = report.checks.find((c) => c.name === "firecracker");
  assertEquals(fc?.status, "PASS");
  assertStringIncludes(fc?.detail ?? "", "v1.14.1 (jailer v1.14.1)");

  await using mixed = await tempHome();
  await firecrackerHome(mixed.home, { vmm: "auto", firecracker: "1.14.1", jailer: "1.13.0" });
  report = await runDoctor(resolveLayout({ BANGER_HOME: mixed.home }, 0, false), {
    home: mixed.home,
  });
  fc = report.checks.find((c) => c.name === "firecracker");
  assertEquals(fc?.status, "FAIL");
  assertStringIncludes(fc?.detail ?? "", "is v1.14.1 but jailer");
  assertStringIncludes(fc?.detail ?? "", "is v1.13.0: the jailer must come from the same release");
});
