/**
 * Finds the Debian mirror this host's apt already uses, so building the golden image
 * talks to the same (possibly local or proxied) archive as `apt-get`. Reads
 * `/etc/apt/sources.list`, `/etc/apt/sources.list.d/*.list` (one-line format) and
 * `/etc/apt/sources.list.d/*.sources` (deb822), in that order, and takes the first
 * enabled `deb` entry whose suites include the wanted suite exactly (so
 * `bookworm-security` does not count for `bookworm`). Without one, Debian's CDN.
 *
 * @module
 */

/** Debian's redirector, used when the host names no mirror for the suite. */
export const DEFAULT_DEBIAN_MIRROR = "http://deb.debian.org/debian";

/** One apt source file's text. */
export interface AptSourceFile {
  /** Its path; the extension decides the format (`.sources` is deb822). */
  path: string;
  /** Its contents. */
  text: string;
}

/**
 * The first mirror serving `suite` in `files`, without a trailing slash. Pure.
 *
 * @returns `undefined` when no enabled `deb` entry lists `suite`.
 * @example
 * ```ts
 * parseDebianMirror([{ path: "/etc/apt/sources.list", text: "deb http://m/debian bookworm main" }], "bookworm");
 * // "http://m/debian"
 * ```
 */
export function parseDebianMirror(
  files: readonly AptSourceFile[],
  suite: string,
): string | undefined {
  for (const file of files) {
    const entries = file.path.endsWith(".sources") ? deb822(file.text) : oneLine(file.text);
    const hit = entries.find((e) =>
      e.types.includes("deb") && e.suites.includes(suite) && /^https?:\/\//.test(e.uri)
    );
    if (hit) return hit.uri.replace(/\/+$/, "");
  }
  return undefined;
}

interface Entry {
  types: string[];
  uri: string;
  suites: string[];
}

function oneLine(text: string): Entry[] {
  const entries: Entry[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.replace(/#.*$/, "").replace(/\[[^\]]*\]/, "").trim();
    const [type, uri, suite] = line.split(/\s+/);
    if (type && uri && suite) entries.push({ types: [type], uri, suites: [suite] });
  }
  return entries;
}

function deb822(text: string): Entry[] {
  const entries: Entry[] = [];
  for (const stanza of text.split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    let last = "";
    for (const line of stanza.split("\n")) {
      if (line.startsWith("#")) continue;
      if (/^\s/.test(line) && last) {
        fields.set(last, `${fields.get(last) ?? ""} ${line.trim()}`);
        continue;
      }
      const m = /^([A-Za-z-]+):\s*(.*)$/.exec(line);
      if (m) {
        last = m[1].toLowerCase();
        fields.set(last, m[2].trim());
      }
    }
    if ((fields.get("enabled") ?? "yes").toLowerCase() === "no") continue;
    const words = (key: string) => (fields.get(key) ?? "").split(/\s+/).filter(Boolean);
    for (const uri of words("uris")) {
      entries.push({ types: words("types"), uri, suites: words("suites") });
    }
  }
  return entries;
}

/**
 * Reads the host's apt sources and returns its mirror for `suite`, or
 * {@linkcode DEFAULT_DEBIAN_MIRROR}. Unreadable files are skipped.
 *
 * @example
 * ```ts
 * await findDebianMirror("bookworm"); // "http://deb.debian.org/debian" on this machine
 * ```
 */
export async function findDebianMirror(suite: string, aptDir = "/etc/apt"): Promise<string> {
  const files: AptSourceFile[] = [];
  const read = async (path: string) => {
    const text = await Deno.readTextFile(path).catch(() => undefined);
    if (text !== undefined) files.push({ path, text });
  };
  await read(`${aptDir}/sources.list`);
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(`${aptDir}/sources.list.d`)) {
      if (/\.(list|sources)$/.test(entry.name)) names.push(entry.name);
    }
  } catch {
    // no sources.list.d
  }
  const listsFirst = (n: string) => (n.endsWith(".list") ? 0 : 1);
  names.sort((a, b) => listsFirst(a) - listsFirst(b) || a.localeCompare(b));
  for (const name of names) await read(`${aptDir}/sources.list.d/${name}`);
  return parseDebianMirror(files, suite) ?? DEFAULT_DEBIAN_MIRROR;
}
