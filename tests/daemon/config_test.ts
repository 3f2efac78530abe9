import { assertEquals, assertStringIncludes, assertThrows } from "../fixtures/assert.ts";
import { ConfigError, DEFAULT_CONFIG, loadConfig, parseConfig } from "../../daemon/config.ts";

const FILE = "/home/u/.config/banger/config.toml";
const parse = (text: string) => parseConfig(text, FILE, "/home/u");

Deno.test("loadConfig() returns the defaults when the file is missing", async () => {
  assertEquals(await loadConfig("/nonexistent/banger/config.toml", "/home/u"), DEFAULT_CONFIG);
});

Deno.test("parseConfig() reads every documented key", () => {
  const c = parse(`
log_level = "debug"
firecracker_bin = "/opt/fc/firecracker"
jailer_bin = "/opt/fc/jailer"
vmm = "qemu"
default_image_name = "alpine-3"
ssh_key_path = "~/.ssh/banger"
bridge_name = "bg-br7"
bridge_ip = "10.99.0.1"
cidr = "10.99.0.0/24"
tap_pool_size = 2
dns_listen = "127.0.0.1:5353"
default_dns = "9.9.9.9"
catalog_url = "http://127.0.0.1:8080/catalog"

[vm_defaults]
vcpu = 4
memory_mib = 2048
disk_size = "4GiB"
system_overlay_size = "2G"

[[file_sync]]
host = "~/.gitconfig"
guest = "~/.gitconfig"

[[file_sync]]
host = "/etc/hosts"
guest = "/root/hosts.copy"
mode = "0644"
`);
  assertEquals(c.logLevel, "debug");
  assertEquals(c.vmm, "qemu");
  assertEquals(c.sshKeyPath, "/home/u/.ssh/banger");
  assertEquals(c.dnsListen, { host: "127.0.0.1", port: 5353 });
  assertEquals(c.vmDefaults, {
    vcpu: 4,
    memoryMib: 2048,
    diskBytes: 4 * 1024 ** 3,
    overlayBytes: 2 * 1024 ** 3,
  });
  assertEquals(c.fileSync, [
    { host: "/home/u/.gitconfig", guest: "/root/.gitconfig", mode: 0o600 },
    { host: "/etc/hosts", guest: "/root/hosts.copy", mode: 0o644 },
  ]);
});

Deno.test("parseConfig() errors name the file, the key and what is allowed", async (t) => {
  const cases: [string, string, string][] = [
    ["unknown key", `colour = "red"`, `key "colour" is not a known field`],
    ["wrong type", `tap_pool_size = "four"`, `"tap_pool_size" must be an integer`],
    ["bad vmm", `vmm = "kvmtool"`, `"vmm" must be one of "auto", "firecracker", "qemu"`],
    [
      "zero size",
      `[vm_defaults]\ndisk_size = "0"`,
      `"vm_defaults.disk_size" must be a positive size`,
    ],
    ["negative size", `[vm_defaults]\ndisk_size = "-1"`, `"vm_defaults.disk_size"`],
    ["bad unit", `[vm_defaults]\nsystem_overlay_size = "4XB"`, `"vm_defaults.system_overlay_size"`],
    ["vcpu 0", `[vm_defaults]\nvcpu = 0`, `"vm_defaults.vcpu" must be an integer from 1 to 32`],
    ["long bridge", `bridge_name = "bg-this-is-too-long"`, `"bridge_name"`],
    ["foreign bridge", `bridge_name = "docker0"`, `"bridge_name"`],
    ["bad cidr", `cidr = "10.0.0.1/24"`, `"cidr" must be an IPv4 network`],
    ["bridge outside cidr", `bridge_ip = "10.0.0.1"`, `"bridge_ip" (10.0.0.1) must lie inside`],
    ["bad listen", `dns_listen = "localhost:53"`, `"dns_listen"`],
    ["unknown nested", `[vm_defaults]\ncpus = 2`, `"vm_defaults.cpus" is not a known field`],
    [
      "file_sync ..",
      `[[file_sync]]\nhost = "/a/../etc/shadow"\nguest = "/root/x"`,
      `"file_sync[0].host" cannot contain ".."`,
    ],
    [
      "file_sync relative",
      `[[file_sync]]\nhost = "a/b"\nguest = "/root/x"`,
      `"file_sync[0].host" must be absolute`,
    ],
    [
      "file_sync ~user",
      `[[file_sync]]\nhost = "~bob/x"\nguest = "/root/x"`,
      `cannot use "~user" paths`,
    ],
    [
      "file_sync outside root",
      `[[file_sync]]\nhost = "/a"\nguest = "/etc/passwd"`,
      `"file_sync[0].guest" must be a path under "/root/"`,
    ],
    [
      "file_sync bad mode",
      `[[file_sync]]\nhost = "/a"\nguest = "/root/a"\nmode = "rw"`,
      `"file_sync[0].mode" must be an octal mode`,
    ],
    ["not toml", `vmm = `, `Cannot parse config file "${FILE}"`],
  ];
  for (const [name, text, expected] of cases) {
    await t.step(name, () => {
      const err = assertThrows(() => parse(text), ConfigError);
      assertStringIncludes(err.message, FILE);
      assertStringIncludes(err.message, expected);
    });
  }
});
