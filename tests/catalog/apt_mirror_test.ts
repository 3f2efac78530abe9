import {
  DEFAULT_DEBIAN_MIRROR,
  findDebianMirror,
  parseDebianMirror,
} from "../../catalog/apt_mirror.ts";
import { assertEquals } from "../fixtures/assert.ts";

const DEB822 = `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
`;

Deno.test("parseDebianMirror() reads deb822 stanzas and matches the suite exactly", () => {
  const files = [{ path: "/etc/apt/sources.list.d/debian.sources", text: DEB822 }];
  assertEquals(parseDebianMirror(files, "bookworm"), "http://deb.debian.org/debian");
  assertEquals(
    parseDebianMirror(files, "bookworm-security"),
    "http://deb.debian.org/debian-security",
  );
  assertEquals(parseDebianMirror(files, "trixie"), undefined);
});

Deno.test("parseDebianMirror() reads one-line sources, skipping deb-src, comments and options", () => {
  const text = [
    "# deb http://commented/debian bookworm main",
    "deb-src http://src.example/debian bookworm main",
    "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main contrib",
  ].join("\n");
  assertEquals(
    parseDebianMirror([{ path: "/etc/apt/sources.list", text }], "bookworm"),
    "http://mirror.example/debian",
  );
});

Deno.test("parseDebianMirror() skips disabled stanzas and non-HTTP URIs", () => {
  const text = `Enabled: no
Types: deb
URIs: http://disabled.example/debian
Suites: bookworm

Types: deb
URIs: file:///srv/mirror cdrom:/x http://ok.example/debian
Suites: bookworm
`;
  assertEquals(
    parseDebianMirror([{ path: "/x/a.sources", text }], "bookworm"),
    "http://ok.example/debian",
  );
});

Deno.test("findDebianMirror() reads sources.list, then .list, then .sources, else the default", async () => {
  const dir = await Deno.makeTempDir();
  try {
    assertEquals(await findDebianMirror("bookworm", dir), DEFAULT_DEBIAN_MIRROR);
    await Deno.mkdir(`${dir}/sources.list.d`);
    await Deno.writeTextFile(`${dir}/sources.list.d/debian.sources`, DEB822);
    await Deno.writeTextFile(
      `${dir}/sources.list.d/x.list.disabled`,
      "deb http://no/debian bookworm main",
    );
    assertEquals(await findDebianMirror("bookworm", dir), "http://deb.debian.org/debian");
    await Deno.writeTextFile(
      `${dir}/sources.list.d/local.list`,
      "deb http://local/debian bookworm main",
    );
    assertEquals(await findDebianMirror("bookworm", dir), "http://local/debian");
    await Deno.writeTextFile(`${dir}/sources.list`, "deb http://first/debian bookworm main");
    assertEquals(await findDebianMirror("bookworm", dir), "http://first/debian");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
