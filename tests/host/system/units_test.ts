import {
  quoteExecArg,
  renderHelperUnit,
  renderOwnerUnit,
  SystemUnitError,
} from "../../../host/system/units.ts";
import { assertEquals, assertThrows } from "../../fixtures/assert.ts";

const SPEC = {
  ownerUser: "alice",
  daemonExec: ["/usr/local/bin/banger", "daemon"],
  helperExec: ["/usr/local/bin/banger-helper", "helper"],
};

Deno.test("renderOwnerUnit() pins the owner daemon unit", () => {
  assertEquals(
    renderOwnerUnit(SPEC),
    `[Unit]
Description=banger owner daemon (VMs, images, RPC for the banger CLI)
Requires=banger-helper.service
After=network.target banger-helper.service

[Service]
Type=simple
User=alice
Environment=BANGER_MODE=system
ExecStart=/usr/local/bin/banger daemon
Restart=on-failure
KillMode=process
RuntimeDirectory=banger
RuntimeDirectoryMode=0700
RuntimeDirectoryPreserve=yes
UMask=0077

[Install]
WantedBy=multi-user.target
`,
  );
});

Deno.test("renderHelperUnit() pins the root unit: KillMode=process, SendSIGKILL=no, preserved 0711 runtime dir", () => {
  assertEquals(
    renderHelperUnit(SPEC),
    `[Unit]
Description=banger root helper (bridge, taps, NAT, loop/dm, jailer)
After=network.target

[Service]
Type=simple
Environment=BANGER_MODE=system
ExecStart=/usr/local/bin/banger-helper helper
Restart=on-failure
KillMode=process
SendSIGKILL=no
RuntimeDirectory=banger-root
RuntimeDirectoryMode=0711
RuntimeDirectoryPreserve=yes
UMask=0077

[Install]
WantedBy=multi-user.target
`,
  );
});

Deno.test("renderOwnerUnit() sets BANGER_ROOT only for a root other than /", () => {
  const text = renderOwnerUnit({ ...SPEC, root: "/tmp/my root" });
  assertEquals(
    text.split("\n").filter((l) => l.startsWith("Environment=")),
    ["Environment=BANGER_MODE=system", 'Environment=BANGER_ROOT="/tmp/my root"'],
  );
  assertEquals(renderOwnerUnit({ ...SPEC, root: "/" }), renderOwnerUnit(SPEC));
});

Deno.test("quoteExecArg() escapes specifiers, variables, spaces and quotes", () => {
  assertEquals(quoteExecArg("--allow-env=BANGER_*"), "--allow-env=BANGER_*");
  assertEquals(quoteExecArg("50%"), "50%%");
  assertEquals(quoteExecArg("$HOME"), "$$HOME");
  assertEquals(quoteExecArg("a b"), '"a b"');
  assertEquals(quoteExecArg('say "hi"\\'), '"say \\"hi\\"\\\\"');
});

Deno.test("unit renderers refuse injected text", async (t) => {
  const cases: [string, () => unknown][] = [
    [
      "a newline in the user name",
      () => renderOwnerUnit({ ...SPEC, ownerUser: "alice\nUser=root" }),
    ],
    [
      "a user name that is not a login name",
      () => renderOwnerUnit({ ...SPEC, ownerUser: "Alice Smith" }),
    ],
    [
      "a newline in an ExecStart word",
      () => renderHelperUnit({ ...SPEC, helperExec: ["/bin/x", "a\nExecStartPre=/bin/sh"] }),
    ],
    ["a relative program", () => renderOwnerUnit({ ...SPEC, daemonExec: ["banger", "daemon"] })],
    ["an empty command line", () => renderHelperUnit({ ...SPEC, helperExec: [] })],
    ["a newline in the root", () => renderHelperUnit({ ...SPEC, root: "/tmp/x\nUser=root" })],
  ];
  for (const [name, fn] of cases) {
    await t.step(name, () => void assertThrows(fn, SystemUnitError, "Cannot"));
  }
});
