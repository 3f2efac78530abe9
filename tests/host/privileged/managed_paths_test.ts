import { assertEquals, assertRejects, assertThrows } from "../../fixtures/assert.ts";
import {
  canonicalPath,
  ManagedPathError,
  ManagedPaths,
} from "../../../host/privileged/managed_paths.ts";

Deno.test("canonicalPath() resolves ., .., // and trailing / lexically", () => {
  assertEquals(canonicalPath("/a/./b//c/"), "/a/b/c");
  assertEquals(canonicalPath("/a/b/../c"), "/a/c");
  assertEquals(canonicalPath("/.."), "/");
  assertEquals(canonicalPath("a/b"), undefined);
  assertEquals(canonicalPath("/a\0b"), undefined);
});

Deno.test("ManagedPaths rejects non-canonical roots", () => {
  assertThrows(
    () => new ManagedPaths({ stateDir: "/s/", cacheDir: "/c", runtimeDir: "/r" }),
    ManagedPathError,
  );
});

Deno.test("ManagedPaths.checkLexical() requires canonical paths strictly inside a root", async (t) => {
  const paths = new ManagedPaths({
    stateDir: "/h/state",
    cacheDir: "/h/cache",
    runtimeDir: "/run/b",
  });
  assertEquals(paths.checkLexical("/h/state/vms/a/root.ext4"), "/h/state/vms/a/root.ext4");
  assertEquals(paths.checkLexical("/run/b/x.sock"), "/run/b/x.sock");
  const cases: [string, string][] = [
    ["/h/state/../../etc/passwd", "invalid_argument"],
    ["/h/state/./x", "invalid_argument"],
    ["/h/state//x", "invalid_argument"],
    ["h/state/x", "invalid_argument"],
    ["/h/state", "permission_denied"],
    ["/h/stateful/x", "permission_denied"],
    ["/etc/passwd", "permission_denied"],
  ];
  for (const [path, code] of cases) {
    await t.step(path, () => {
      assertEquals(assertThrows(() => paths.checkLexical(path), ManagedPathError).code, code);
    });
  }
});

Deno.test("ManagedPaths.check() refuses a symlink on any component and checks existence and kind", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "bgt-paths-" });
  try {
    const layout = { stateDir: `${dir}/state`, cacheDir: `${dir}/cache`, runtimeDir: `${dir}/run` };
    await Deno.mkdir(`${layout.stateDir}/vms/a`, { recursive: true });
    await Deno.writeTextFile(`${layout.stateDir}/vms/a/root.ext4`, "");
    await Deno.mkdir(`${dir}/elsewhere`);
    await Deno.symlink(`${dir}/elsewhere`, `${layout.stateDir}/vms/evil`);
    await Deno.symlink("/etc/passwd", `${layout.stateDir}/vms/a/link.ext4`);
    const paths = new ManagedPaths(layout);
    await t.step("accepts an existing file and a missing file in an existing dir", async () => {
      const file = `${layout.stateDir}/vms/a/root.ext4`;
      assertEquals(await paths.check(file, { mustExist: true, kind: "file" }), file);
      assertEquals(
        await paths.check(`${layout.stateDir}/vms/a/new`),
        `${layout.stateDir}/vms/a/new`,
      );
    });
    const refusals: [string, string, object, string][] = [
      ["symlinked directory", `${layout.stateDir}/vms/evil/x`, {}, "permission_denied"],
      [
        "symlink as the last component",
        `${layout.stateDir}/vms/a/link.ext4`,
        {},
        "permission_denied",
      ],
      [
        "missing but required",
        `${layout.stateDir}/vms/a/none`,
        { mustExist: true },
        "invalid_argument",
      ],
      ["missing parent", `${layout.stateDir}/vms/b/x`, {}, "invalid_argument"],
      [
        "file where a dir is required",
        `${layout.stateDir}/vms/a/root.ext4`,
        { kind: "dir" },
        "invalid_argument",
      ],
      [
        "dir where a file is required",
        `${layout.stateDir}/vms/a`,
        { kind: "file" },
        "invalid_argument",
      ],
      ["file used as a directory", `${layout.stateDir}/vms/a/root.ext4/x`, {}, "invalid_argument"],
    ];
    for (const [name, path, req, code] of refusals) {
      await t.step(name, async () => {
        const err = await assertRejects(() => paths.check(path, req), ManagedPathError);
        assertEquals(err.code, code, err.message);
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
