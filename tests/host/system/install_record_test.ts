import {
  InstallRecordError,
  parseInstallRecord,
  readInstallRecord,
  renderInstallRecord,
} from "../../../host/system/install_record.ts";
import { assertEquals, assertThrows } from "../../fixtures/assert.ts";

const RECORD = {
  ownerUser: "alice",
  ownerUid: 1000,
  ownerGid: 1000,
  ownerHome: "/home/alice",
  version: "0.1.0",
  installedAt: "2025-01-02T03:04:05.000Z",
};

Deno.test("renderInstallRecord() pins the TOML", () => {
  assertEquals(
    renderInstallRecord(RECORD),
    `# banger system install record, written by \`banger system install\`. The root helper
# serves only root and owner_uid; the CLI and daemon use the system layout.
owner_user = "alice"
owner_uid = 1000
owner_gid = 1000
owner_home = "/home/alice"
version = "0.1.0"
installed_at = "2025-01-02T03:04:05.000Z"
`,
  );
});

Deno.test("parseInstallRecord() reads back what renderInstallRecord() wrote", () => {
  assertEquals(parseInstallRecord(renderInstallRecord(RECORD), "/etc/banger/install.toml"), RECORD);
});

Deno.test("renderInstallRecord() refuses injected text", async (t) => {
  const cases: [string, Partial<typeof RECORD>][] = [
    ["a newline in the user name", { ownerUser: "alice\nowner_uid = 0" }],
    ["a quote in the user name", { ownerUser: 'alice"' }],
    ["a newline in the home", { ownerHome: "/home/a\nowner_uid = 0" }],
    ["a quote in the version", { version: '1"\nowner_uid = 0 #' }],
    ["a relative home", { ownerHome: "home/alice" }],
    ["a negative uid", { ownerUid: -1 }],
  ];
  for (const [name, patch] of cases) {
    await t.step(name, () => {
      assertThrows(
        () => renderInstallRecord({ ...RECORD, ...patch }),
        InstallRecordError,
        "Cannot write",
      );
    });
  }
});

Deno.test("parseInstallRecord() rejects unknown keys and missing fields, naming the file", () => {
  const text = renderInstallRecord(RECORD);
  assertThrows(
    () => parseInstallRecord(text + "extra = 1\n", "/x.toml"),
    InstallRecordError,
    '"/x.toml"',
  );
  assertThrows(
    () => parseInstallRecord(text.replace(/owner_uid = 1000\n/, ""), "/x.toml"),
    InstallRecordError,
    "owner_uid",
  );
});

Deno.test("readInstallRecord() is undefined when banger is not installed under the root", async () => {
  const root = await Deno.makeTempDir();
  try {
    assertEquals(await readInstallRecord(root), undefined);
    await Deno.mkdir(`${root}/etc/banger`, { recursive: true });
    await Deno.writeTextFile(`${root}/etc/banger/install.toml`, renderInstallRecord(RECORD));
    assertEquals(await readInstallRecord(root), RECORD);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
