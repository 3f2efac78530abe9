import { assertEquals, assertRejects, assertThrows } from "../fixtures/assert.ts";
import { ensureLayout, ensurePrivateDir, LayoutError, resolveLayout } from "../../host/layout.ts";
import { isRoot } from "../fixtures/requires.ts";

Deno.test("resolveLayout() follows XDG with the documented fallbacks", () => {
  const l = resolveLayout({ HOME: "/home/u" }, 1000, false);
  assertEquals(l.configFile, "/home/u/.config/banger/config.toml");
  assertEquals(l.stateDir, "/home/u/.local/state/banger");
  assertEquals(l.cacheDir, "/home/u/.cache/banger");
  assertEquals(l.runtimeDir, "/tmp/banger-1000");
  assertEquals(resolveLayout({ HOME: "/root" }, 0, true).runtimeDir, "/run/banger-0");
  const x = resolveLayout(
    {
      HOME: "/home/u",
      XDG_CONFIG_HOME: "/c",
      XDG_STATE_HOME: "/s",
      XDG_CACHE_HOME: "/k",
      XDG_RUNTIME_DIR: "/run/user/1000",
    },
    1000,
    false,
  );
  assertEquals([x.configDir, x.stateDir, x.cacheDir, x.runtimeDir], [
    "/c/banger",
    "/s/banger",
    "/k/banger",
    "/run/user/1000/banger",
  ]);
});

Deno.test("resolveLayout() roots everything under BANGER_HOME", () => {
  const l = resolveLayout({ HOME: "/home/u", BANGER_HOME: "/tmp/bh/" }, 1000, false);
  assertEquals(
    [l.configDir, l.stateDir, l.cacheDir, l.runtimeDir],
    ["/tmp/bh/config", "/tmp/bh/state", "/tmp/bh/cache", "/tmp/bh/run"],
  );
});

Deno.test("resolveLayout() refuses relative paths and a missing HOME", () => {
  assertThrows(() => resolveLayout({ BANGER_HOME: "rel" }, 0, false), LayoutError, "absolute");
  assertThrows(() => resolveLayout({}, 0, false), LayoutError, "HOME is not set");
});

Deno.test("ensurePrivateDir() creates 0700 dirs and refuses group/world-writable ones", async () => {
  const base = await Deno.makeTempDir({ prefix: "bg-layout-" });
  try {
    await ensurePrivateDir(`${base}/a/b`, Deno.uid() ?? 0);
    assertEquals(((await Deno.stat(`${base}/a/b`)).mode ?? 0) & 0o777, 0o700);
    await Deno.mkdir(`${base}/open`);
    await Deno.chmod(`${base}/open`, 0o777);
    await assertRejects(
      () => ensurePrivateDir(`${base}/open`, Deno.uid() ?? 0),
      LayoutError,
      "writable by others",
    );
    await Deno.chmod(`${base}/open`, 0o770);
    await assertRejects(
      () => ensurePrivateDir(`${base}/open`, Deno.uid() ?? 0),
      LayoutError,
      "writable by its group",
    );
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test({
  name: `ensurePrivateDir() refuses a directory owned by another user${
    isRoot ? "" : " [skipped: needs root to chown]"
  }`,
  ignore: !isRoot,
  fn: async () => {
    const base = await Deno.makeTempDir({ prefix: "bg-layout-" });
    try {
      await Deno.chmod(base, 0o700);
      await Deno.chown(base, 12345, 12345);
      await assertRejects(() => ensurePrivateDir(base, 0), LayoutError, "owned by uid 12345");
    } finally {
      await Deno.remove(base, { recursive: true });
    }
  },
});

Deno.test("ensureLayout() refuses a runtime dir whose socket path would not fit sun_path", async () => {
  const base = await Deno.makeTempDir({ prefix: "bg-layout-" });
  try {
    const deep = `${base}/${"d".repeat(100)}`;
    const l = resolveLayout({ BANGER_HOME: deep }, 0, false);
    await assertRejects(
      () => ensureLayout(l, Deno.uid() ?? 0),
      LayoutError,
      "longer than 107 bytes",
    );
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});
