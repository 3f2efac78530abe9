import {
  COMPLETE_MARKER,
  GUEST_PACK,
  GUEST_UNPACK,
  hostPackArgs,
  parseCopyEnd,
  planCopy,
} from "../../../commands/guest/cp.ts";
import { UsageError } from "../../../commands/command_line.ts";
import { assertEquals, assertStringIncludes, assertThrows } from "../../fixtures/assert.ts";

Deno.test("parseCopyEnd() reads VM:PATH, and a path with a slash before its colon as the host's", () => {
  assertEquals(parseCopyEnd("dev:/root/x"), { vm: "dev", path: "/root/x" });
  assertEquals(parseCopyEnd("dev:"), { vm: "dev", path: "." });
  assertEquals(parseCopyEnd("./a:b"), { host: "./a:b" });
  assertEquals(parseCopyEnd("/tmp/a:b"), { host: "/tmp/a:b" });
  assertEquals(parseCopyEnd("plain"), { host: "plain" });
  assertEquals(parseCopyEnd("-"), { host: "-" });
});

Deno.test("planCopy() needs exactly one VM side and a lone -", () => {
  assertEquals(planCopy(["a", "b/", "dev:/root/"]), {
    direction: "in",
    vm: "dev",
    sources: ["a", "b/"],
    dest: "/root/",
  });
  assertEquals(planCopy(["dev:/etc/hosts", "dev:/etc/os-release", "."]), {
    direction: "out",
    vm: "dev",
    sources: ["/etc/hosts", "/etc/os-release"],
    dest: ".",
  });
  assertEquals(planCopy(["-", "dev:/root"]).sources, ["-"]);
  for (
    const bad of [
      ["a", "b"],
      ["dev:/a", "other:/b"],
      ["dev:/a", "other:/b", "."],
      ["dev:/a", "./x", "."],
      ["-", "a", "dev:/root"],
      ["dev:/a"],
    ]
  ) {
    assertThrows(() => planCopy(bad), UsageError);
  }
});

Deno.test("the guest ends of vm cp pack and unpack a tree with docker cp's semantics, atomically", async () => {
  const root = await Deno.makeTempDir({ prefix: "bgcp-" });
  const sh = async (script: string, args: string[], stdin?: Uint8Array) => {
    const child = new Deno.Command("sh", {
      args: ["-c", script, "banger-cp", ...args],
      stdin: stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    if (stdin) {
      const w = child.stdin.getWriter();
      await w.write(stdin);
      await w.close();
    }
    return await child.output();
  };
  try {
    await Deno.mkdir(`${root}/src/tree/sub/empty`, { recursive: true });
    await Deno.writeTextFile(`${root}/src/tree/sub/run.sh`, "#!/bin/sh\n", { mode: 0o755 });
    await Deno.chmod(`${root}/src/tree/sub/run.sh`, 0o755);
    await Deno.symlink("sub/run.sh", `${root}/src/tree/link`);
    const packedOut = await sh(GUEST_PACK, [`${root}/src/tree`]);
    assertEquals(packedOut.code, 0, new TextDecoder().decode(packedOut.stderr));
    // What the host sends: the same tree, with the marker last.
    await Deno.mkdir(`${root}/marker`);
    await Deno.writeFile(`${root}/marker/${COMPLETE_MARKER}`, new Uint8Array());
    const packed = await new Deno.Command("tar", {
      args: hostPackArgs([`${root}/src/tree`], `${root}/marker`),
      stdout: "piped",
    }).output();
    await Deno.mkdir(`${root}/into`);
    const into = await sh(GUEST_UNPACK, [`${root}/into`, "1"], packed.stdout);
    assertEquals(into.code, 0, new TextDecoder().decode(into.stderr));
    assertEquals(await Deno.readLink(`${root}/into/tree/link`), "sub/run.sh");
    assertEquals(((await Deno.stat(`${root}/into/tree/sub/run.sh`)).mode ?? 0) & 0o777, 0o755);
    assertEquals((await Deno.stat(`${root}/into/tree/sub/empty`)).isDirectory, true);
    assertEquals(
      await Deno.lstat(`${root}/into/${COMPLETE_MARKER}`).catch(() => undefined),
      undefined,
    );
    const named = await sh(GUEST_UNPACK, [`${root}/renamed`, "1"], packed.stdout);
    assertEquals(named.code, 0);
    assertEquals(
      (await Deno.stat(`${root}/renamed/sub/run.sh`)).isFile,
      true,
      "a new name takes the one source",
    );
    const missing = await sh(GUEST_PACK, [`${root}/nothing`]);
    assertEquals(missing.code, 3);
    assertStringIncludes(
      new TextDecoder().decode(missing.stderr),
      "banger-cp: no such file or directory",
    );
    // Cut anywhere before the marker's header, even exactly at a member boundary.
    const text = new TextDecoder("latin1").decode(packed.stdout);
    const markerAt = text.indexOf(COMPLETE_MARKER);
    for (const cut of [700, 1024, 1536, markerAt]) {
      const broken = await sh(
        GUEST_UNPACK,
        [`${root}/partial`, "1"],
        packed.stdout.subarray(0, cut),
      );
      assertEquals(broken.code !== 0, true, `a stream cut at ${cut} fails`);
    }
    const left = [...Deno.readDirSync(root)].map((e) => e.name).sort();
    assertEquals(left, ["into", "marker", "renamed", "src"], "nothing partial, no staging left");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
