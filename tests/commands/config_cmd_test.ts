/**
 * `banger config show|check` through the real CLI (no daemon): defaults filled in, the
 * file's own settings kept, what `show` prints read back as the same settings, and a bad
 * key named with exit 1.
 */
import { assertEquals, assertStringIncludes } from "../fixtures/assert.ts";
import { runBanger } from "../fixtures/banger_cli.ts";

Deno.test("banger config show fills in defaults, round-trips, and check names a bad key", async () => {
  const home = await Deno.makeTempDir({ prefix: "bg-config-" });
  try {
    const env = { BANGER_HOME: home, HOME: home };
    const mine = `${home}/mine.toml`;
    await Deno.writeTextFile(
      mine,
      'vmm = "qemu"\n[vm_defaults]\nmemory_mib = 2048\n[[file_sync]]\nhost = "~/.gitconfig"\nguest = "~/.gitconfig"\n',
    );
    const shown = await runBanger(["config", "show", "--config", mine, "--json"], { env });
    assertEquals(shown.code, 0, shown.stderr);
    const report = JSON.parse(shown.stdout);
    assertEquals([report.path, report.exists], [mine, true]);
    assertEquals(report.settings.vmm, "qemu");
    assertEquals(report.settings.vm_defaults, {
      vcpu: 2,
      memory_mib: 2048,
      disk_size: String(8 * 1024 ** 3),
      system_overlay_size: String(8 * 1024 ** 3),
    });
    assertEquals(report.settings.file_sync, [
      { host: `${home}/.gitconfig`, guest: "/root/.gitconfig", mode: "0600" },
    ]);

    // What `show` prints is a config file that means the same.
    const toml = await runBanger(["config", "show", "--config", mine], { env });
    await Deno.writeTextFile(`${home}/shown.toml`, toml.stdout);
    const again = await runBanger(["config", "show", "--config", `${home}/shown.toml`, "--json"], {
      env,
    });
    assertEquals(JSON.parse(again.stdout).settings, report.settings);
    const ok = await runBanger(["config", "check", "--config", `${home}/shown.toml`], { env });
    assertEquals([ok.code, ok.stdout], [0, `${home}/shown.toml: valid\n`], ok.stderr);

    const none = await runBanger(["config", "check"], { env });
    assertEquals(none.code, 0, none.stderr);
    assertStringIncludes(none.stdout, "no such file; banger uses the defaults");

    await Deno.writeTextFile(`${home}/bad.toml`, "tap_pool_size = 999\n");
    const bad = await runBanger(["config", "check", "--config", `${home}/bad.toml`], { env });
    assertEquals(bad.code, 1);
    assertStringIncludes(bad.stderr, `Invalid config file "${home}/bad.toml": key "tap_pool_size"`);
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});
