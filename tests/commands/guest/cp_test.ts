import { parseCopyEnd, planCopy } from "../../../commands/guest/cp.ts";
import { UsageError } from "../../../commands/command_line.ts";
import { assertEquals, assertThrows } from "../../fixtures/assert.ts";

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
