import { assertEquals, assertThrows } from "../../fixtures/assert.ts";
import {
  addInclude,
  hasInclude,
  removeInclude,
  renderSshConfig,
  SshConfigError,
} from "../../../host/ssh/ssh_config.ts";

const opts = { keyPath: "/s/id", knownHosts: "/s/kh", controlDir: "/r" };

Deno.test("renderSshConfig() writes a block per VM and the shared *.vm settings", () => {
  assertEquals(
    renderSshConfig([{ name: "dev", ip: "172.16.0.2" }], opts),
    [
      "# Managed by banger; rewritten as VMs come and go. Do not edit.",
      "# Use it from ~/.ssh/config with: banger ssh-config --install",
      "",
      "Host dev.vm",
      "  HostName 172.16.0.2",
      "  HostKeyAlias dev.vm",
      "",
      "Host *.vm",
      "  User root",
      "  IdentityFile /s/id",
      "  IdentitiesOnly yes",
      "  UserKnownHostsFile /s/kh",
      "  StrictHostKeyChecking accept-new",
      "  HashKnownHosts no",
      "  ControlMaster auto",
      "  ControlPath /r/ssh-%n.sock",
      "  ControlPersist 120s",
      "  LogLevel ERROR",
      "",
    ].join("\n"),
  );
});

Deno.test("renderSshConfig() refuses injected text in names, addresses and paths", () => {
  assertThrows(
    () => renderSshConfig([{ name: "dev\nHost *", ip: "172.16.0.2" }], opts),
    SshConfigError,
  );
  assertThrows(
    () => renderSshConfig([{ name: "dev", ip: "1.2.3.4 ProxyCommand x" }], opts),
    SshConfigError,
  );
  assertThrows(() => renderSshConfig([], { ...opts, keyPath: "/s/my key" }), SshConfigError);
});

Deno.test("addInclude() and removeInclude() round-trip, idempotent, touching nothing else", () => {
  const original = "Host example\n  User me\n";
  const installed = addInclude(original, "/c/ssh_config");
  assertEquals(
    installed,
    "# >>> banger >>>\nInclude /c/ssh_config\n# <<< banger <<<\n\nHost example\n  User me\n",
  );
  assertEquals(addInclude(installed, "/c/ssh_config"), installed);
  assertEquals(hasInclude(installed), true);
  assertEquals(removeInclude(installed), original);
  assertEquals(removeInclude(original), original);
  assertEquals(removeInclude(addInclude("", "/c/ssh_config")), "");
});
