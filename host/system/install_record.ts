/**
 * The install record `/etc/banger/install.toml`, written by `banger system install`. The
 * root helper serves only root and `owner_uid` from it, and its presence switches the
 * CLI and the owner daemon to the system layout. It is root's (0644): the owner can read
 * but not change who the helper trusts.
 *
 * @module
 */

import { parse as parseToml, stringify as stringifyToml } from "smol-toml";
import { BangerError } from "../errors.ts";
import { installRecordPath } from "../layout.ts";
import * as s from "../schema.ts";

/** The install record is missing fields, malformed, or would carry injected text. */
export class InstallRecordError extends BangerError {}

/** Who banger was installed for. */
export interface InstallRecord {
  /** The owner's login name. */
  ownerUser: string;
  /** Its uid: the only unprivileged uid the helper serves. */
  ownerUid: number;
  /** Its primary gid. */
  ownerGid: number;
  /** Its home directory. */
  ownerHome: string;
  /** banger's version at install time. */
  version: string;
  /** When it was installed (ISO 8601). */
  installedAt: string;
}

/** POSIX-style login names (what useradd accepts by default), at most 32 bytes. */
const USER_NAME = /^[a-z_][a-z0-9_-]{0,30}\$?$/;
// deno-lint-ignore no-control-regex
const UNSAFE = /[\x00-\x1f\x7f"\\]/;
const id = s.number({ int: true, min: 0, max: 0xfffffffe });
const fileSchema = s.object({
  owner_user: s.string({ pattern: USER_NAME, expected: "a login name" }),
  owner_uid: id,
  owner_gid: id,
  owner_home: s.string({ min: 1, max: 4096 }),
  version: s.string({ min: 1, max: 64 }),
  installed_at: s.string({ min: 1, max: 64 }),
});

/**
 * Renders the record as TOML. Pure.
 *
 * @throws {InstallRecordError} `invalid_argument` for a user name that is not a login
 *   name, a relative home, or a quote, backslash or control character (a newline) in any
 *   field.
 * @example
 * ```ts
 * renderInstallRecord({ ownerUser: "alice", ownerUid: 1000, ownerGid: 1000,
 *   ownerHome: "/home/alice", version: "0.1.0", installedAt: "2025-01-01T00:00:00.000Z" });
 * ```
 */
export function renderInstallRecord(r: InstallRecord): string {
  if (!USER_NAME.test(r.ownerUser)) {
    reject(`the user name ${JSON.stringify(r.ownerUser)} is not a login name`);
  }
  for (const [name, v] of [["uid", r.ownerUid], ["gid", r.ownerGid]] as const) {
    if (!Number.isInteger(v) || v < 0 || v > 0xfffffffe) reject(`${name} ${v} is not a valid id`);
  }
  if (!r.ownerHome.startsWith("/")) reject(`the home "${r.ownerHome}" is not absolute`);
  for (
    const [name, v] of [["home", r.ownerHome], ["version", r.version], [
      "installed_at",
      r.installedAt,
    ]]
  ) {
    if (UNSAFE.test(v)) {
      reject(`${name} ${JSON.stringify(v)} has a quote, backslash or control character`);
    }
  }
  // smol-toml escapes; the checks above still refuse what no such field may hold, so a
  // record never carries text a reader could mistake for another key.
  return [
    "# banger system install record, written by `banger system install`. The root helper",
    "# serves only root and owner_uid; the CLI and daemon use the system layout.",
    stringifyToml({
      owner_user: r.ownerUser,
      owner_uid: r.ownerUid,
      owner_gid: r.ownerGid,
      owner_home: r.ownerHome,
      version: r.version,
      installed_at: r.installedAt,
    }),
  ].join("\n");
}

function reject(why: string): never {
  throw new InstallRecordError(`Cannot write the install record: ${why}`, {
    code: "invalid_argument",
  });
}

/**
 * Parses the record's text.
 *
 * @throws {InstallRecordError} `invalid_argument` naming `path` and the bad field.
 */
export function parseInstallRecord(text: string, path: string): InstallRecord {
  try {
    const f = fileSchema.parse(parseToml(text), "");
    return {
      ownerUser: f.owner_user,
      ownerUid: f.owner_uid,
      ownerGid: f.owner_gid,
      ownerHome: f.owner_home,
      version: f.version,
      installedAt: f.installed_at,
    };
  } catch (err) {
    throw new InstallRecordError(
      `Cannot read the install record "${path}": ${err instanceof Error ? err.message : err}`,
      {
        code: "invalid_argument",
        hint: "reinstall, as root: banger system install --owner USER",
        cause: err,
      },
    );
  }
}

/**
 * Reads the install record under `root`; `undefined` when banger is not installed there.
 *
 * @throws {InstallRecordError} when it exists but cannot be parsed.
 */
export async function readInstallRecord(root: string): Promise<InstallRecord | undefined> {
  const path = installRecordPath(root);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
  return parseInstallRecord(text, path);
}
