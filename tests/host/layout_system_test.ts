import {
  helperRuntimeDir,
  helperSocket,
  installRecordPath,
  resolveLayout,
  systemLayout,
} from "../../host/layout.ts";
import { assertEquals } from "../fixtures/assert.ts";

Deno.test("systemLayout() puts config in /etc, state in /var/lib, cache in /var/cache, sockets in /run", () => {
  assertEquals(systemLayout("/"), {
    configDir: "/etc/banger",
    configFile: "/etc/banger/config.toml",
    sshConfigFile: "/var/lib/banger/ssh_config",
    stateDir: "/var/lib/banger",
    cacheDir: "/var/cache/banger",
    runtimeDir: "/run/banger",
    mode: "system",
  });
  assertEquals(helperSocket("/"), "/run/banger-root/helper.sock");
  assertEquals(installRecordPath("/"), "/etc/banger/install.toml");
});

Deno.test("systemLayout() prefixes every path with BANGER_ROOT", () => {
  assertEquals(systemLayout("/tmp/r/").stateDir, "/tmp/r/var/lib/banger");
  assertEquals(helperRuntimeDir("/tmp/r"), "/tmp/r/run/banger-root");
});

Deno.test("resolveLayout() selects the system layout with BANGER_MODE=system; BANGER_HOME still wins", () => {
  assertEquals(
    resolveLayout({ BANGER_MODE: "system", BANGER_ROOT: "/tmp/r" }, 1000, false).runtimeDir,
    "/tmp/r/run/banger",
  );
  assertEquals(
    resolveLayout({ BANGER_MODE: "system", BANGER_HOME: "/tmp/h" }, 1000, false).stateDir,
    "/tmp/h/state",
  );
  assertEquals(resolveLayout({ HOME: "/home/a" }, 1000, false).mode, undefined);
});
