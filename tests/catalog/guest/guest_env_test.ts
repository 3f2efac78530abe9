import { GuestEnvError, renderGuestEnv } from "../../../catalog/guest/guest_env.ts";
import { assertEquals, assertThrows } from "../../fixtures/assert.ts";

const VALID = {
  vmId: "a1b2c3",
  vmName: "dev",
  hostname: "dev",
  guestIp: "172.16.0.2/24",
  gateway: "172.16.0.1",
  dns: ["172.16.0.1", "1.1.1.1"],
};

Deno.test("renderGuestEnv() writes one KEY=VALUE per line in a fixed order", () => {
  assertEquals(
    renderGuestEnv(VALID),
    "BANGER_VM_ID=a1b2c3\nBANGER_VM_NAME=dev\nBANGER_HOSTNAME=dev\nBANGER_GUEST_IP=172.16.0.2/24\n" +
      "BANGER_GATEWAY=172.16.0.1\nBANGER_DNS=172.16.0.1,1.1.1.1\n",
  );
  assertEquals(
    renderGuestEnv({ vmId: "x", vmName: "x", hostname: "x", guestIp: "10.0.0.2/30" }),
    "BANGER_VM_ID=x\nBANGER_VM_NAME=x\nBANGER_HOSTNAME=x\nBANGER_GUEST_IP=10.0.0.2/30\n",
  );
});

Deno.test("renderGuestEnv() rejects values that could inject lines or commands", async (t) => {
  const cases: [string, Partial<typeof VALID>, string][] = [
    ["newline in name", { vmName: "dev\nBANGER_GATEWAY=1.2.3.4" }, "BANGER_VM_NAME"],
    ["space in hostname", { hostname: "dev box" }, "BANGER_HOSTNAME"],
    ["uppercase id", { vmId: "ABC" }, "BANGER_VM_ID"],
    ["ip without prefix", { guestIp: "172.16.0.2" }, "BANGER_GUEST_IP"],
    ["prefix over 32", { guestIp: "172.16.0.2/33" }, "BANGER_GUEST_IP"],
    ["substitution in gateway", { gateway: "$(reboot)" }, "BANGER_GATEWAY"],
    ["bad dns", { dns: ["1.1.1.1", "dns.example"] }, 'BANGER_DNS="dns.example"'],
  ];
  for (const [name, patch, field] of cases) {
    await t.step(name, () => {
      assertThrows(() => renderGuestEnv({ ...VALID, ...patch }), GuestEnvError, field);
    });
  }
});
