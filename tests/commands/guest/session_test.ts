import { trustedSshArgv } from "../../../commands/guest/session.ts";
import { CliError } from "../../../commands/env.ts";
import { assertEquals, assertThrows } from "../../fixtures/assert.ts";

const ARGV = ["ssh", "-F", "/dev/null", "root@172.16.0.2", "--", "true"];

Deno.test("trustedSshArgv() runs the daemon's ssh command only for the daemon's own uid", () => {
  assertEquals(trustedSshArgv(ARGV, 1000, 1000), ARGV);
  // `sudo banger vm ssh` against a system install: root must not run what the owner chose.
  assertThrows(() => trustedSshArgv(ARGV, 1000, 0), CliError, "must not choose what uid 0 runs");
  assertThrows(() => trustedSshArgv(ARGV, 0, 1000), CliError, "comes from the daemon of uid 0");
});

Deno.test("trustedSshArgv() runs nothing but ssh", () => {
  assertThrows(
    () => trustedSshArgv(["/tmp/evil", ...ARGV.slice(1)], 0, 0),
    CliError,
    "only ssh is run",
  );
  assertThrows(() => trustedSshArgv(["sh", "-c", "id"], 0, 0), CliError, "only ssh is run");
});
