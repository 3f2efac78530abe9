import { GuestAccess } from "../../../daemon/vm/guest_access.ts";
import { SshError } from "../../../host/ssh/ssh.ts";
import { assertRejects, assertStringIncludes } from "../../fixtures/assert.ts";

Deno.test("waitForGuest() gives up naming what answered and what the console last said", async () => {
  const dir = await Deno.makeTempDir({ prefix: "banger-guest-access-" });
  try {
    await Deno.writeTextFile(
      `${dir}/serial.log`,
      "[    0.000000] Linux version 6.1\n[    0.1] Command line: console=ttyS0\n[    2.1] EXT4-fs (vda): mounted\n[    9.9] random: crng init done\n",
    );
    // Nothing listens for SSH on this loopback address, and no vsock is asked for.
    const access = new GuestAccess(`${dir}/key`, `${dir}/known_hosts`, dir);
    const vm = { id: "vm1", name: "stuck", guestIp: "127.0.0.9", vmDir: dir };
    const err = await assertRejects(
      () =>
        access.waitForGuest(vm, {
          timeoutMs: 300,
          vsock: false,
          stillAlive: () => Promise.resolve(true),
        }),
      SshError,
      'VM "stuck" did not become ready',
    );
    assertStringIncludes(err.message, "(no answer from the guest)");
    assertStringIncludes(
      err.message,
      "its console last said: [    0.1] Command line: console=ttyS0 | [    2.1] EXT4-fs (vda): mounted | [    9.9] random: crng init done",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("waitForGuest() says the VM stopped when its VMM is gone", async () => {
  const dir = await Deno.makeTempDir({ prefix: "banger-guest-access-" });
  try {
    const access = new GuestAccess(`${dir}/key`, `${dir}/known_hosts`, dir);
    const vm = { id: "vm1", name: "gone", guestIp: "127.0.0.9", vmDir: dir };
    await assertRejects(
      () =>
        access.waitForGuest(vm, {
          timeoutMs: 30_000,
          vsock: false,
          stillAlive: () => Promise.resolve(false),
        }),
      SshError,
      'VM "gone" stopped while booting',
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
