/**
 * What banger writes onto a VM's work disk (`/root` in the guest) before every start:
 * the managed public key, the VM's own SSH host key (`.banger/ssh_host_ed25519_key`),
 * `.banger/guest.env` (the guest's network identity) and the `[[file_sync]]` entries. Paths are relative to the work disk's root, so `/root/x` in
 * the guest is `/x` here. Host files are read by the daemon and sent as bytes, so the
 * privileged writer never opens a user path itself.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { BangerError } from "../../host/errors.ts";
import type { Ext4Op } from "../../host/privileged/privileged_ops.ts";
import type { FileSync } from "../config.ts";
import { vmFiles } from "../../host/layout.ts";
import { ensureKey } from "../../host/ssh/ssh.ts";

/**
 * The VM's SSH host key, made once in `vmDir` by the daemon, and the operations that put
 * it on the work disk, where the guest's host-key unit installs it before sshd starts.
 *
 * @returns its public key line, to pin before the first boot.
 */
export async function hostKeyOps(vmDir: string): Promise<{ ops: Ext4Op[]; publicKey: string }> {
  const key = `${vmDir}/${vmFiles.hostKey}`;
  const publicKey = await ensureKey(key);
  return {
    publicKey,
    // After identityOps, which makes /.banger.
    ops: [
      {
        kind: "writeFile",
        path: `/.banger/${vmFiles.hostKey}`,
        hostFile: key,
        mode: 0o600,
        uid: 0,
        gid: 0,
      },
      {
        kind: "writeFile",
        path: `/.banger/${vmFiles.hostKey}.pub`,
        text: `${publicKey}\n`,
        mode: 0o644,
        uid: 0,
        gid: 0,
      },
    ],
  };
}

/** A file_sync entry that cannot be copied. */
export class FileSyncError extends BangerError {}

/** Largest total of file_sync bytes copied per start. */
const MAX_SYNC_BYTES = 256 * 1024 * 1024;

/** Operations for the key and guest.env. Pure. */
export function identityOps(publicKey: string, guestEnv: string): Ext4Op[] {
  return [
    { kind: "mkdir", path: "/.ssh", mode: 0o700, uid: 0, gid: 0 },
    {
      kind: "writeFile",
      path: "/.ssh/authorized_keys",
      text: `${publicKey.trim()}\n`,
      mode: 0o600,
      uid: 0,
      gid: 0,
    },
    { kind: "mkdir", path: "/.banger", mode: 0o755, uid: 0, gid: 0 },
    { kind: "writeFile", path: "/.banger/guest.env", text: guestEnv, mode: 0o644, uid: 0, gid: 0 },
  ];
}

/**
 * Operations copying each `[[file_sync]]` entry: a file with the entry's mode, a
 * directory recursively with its source modes. Missing host paths are skipped and
 * reported in `skipped`.
 *
 * @throws {FileSyncError} when the entries total more than 256 MiB.
 */
export async function fileSyncOps(
  entries: readonly FileSync[],
): Promise<{ ops: Ext4Op[]; skipped: string[] }> {
  const ops: Ext4Op[] = [];
  const skipped: string[] = [];
  let total = 0;
  const addFile = async (host: string, guest: string, mode: number) => {
    const bytes = await Deno.readFile(host);
    total += bytes.length;
    if (total > MAX_SYNC_BYTES) {
      throw new FileSyncError(
        `Cannot copy file_sync entries: they exceed ${MAX_SYNC_BYTES / 1024 ** 2} MiB`,
        {
          code: "too_large",
          hint: "sync fewer or smaller files",
        },
      );
    }
    ops.push({
      kind: "writeFile",
      path: guest,
      base64: Buffer.from(bytes).toString("base64"),
      mode,
      uid: 0,
      gid: 0,
    });
  };
  const walk = async (host: string, guest: string): Promise<void> => {
    for await (const e of Deno.readDir(host)) {
      const h = `${host}/${e.name}`;
      const g = `${guest}/${e.name}`;
      const info = await Deno.lstat(h);
      if (info.isDirectory) {
        ops.push({ kind: "mkdir", path: g, mode: (info.mode ?? 0o755) & 0o7777, uid: 0, gid: 0 });
        await walk(h, g);
      } else if (info.isFile) await addFile(h, g, (info.mode ?? 0o644) & 0o7777);
    }
  };
  for (const entry of entries) {
    const guest = entry.guest.replace(/^\/root/, "");
    let info: Deno.FileInfo;
    try {
      info = await Deno.stat(entry.host);
    } catch {
      skipped.push(entry.host);
      continue;
    }
    if (info.isDirectory) {
      ops.push({ kind: "mkdir", path: guest, mode: (info.mode ?? 0o755) & 0o7777, uid: 0, gid: 0 });
      await walk(entry.host, guest);
    } else await addFile(entry.host, guest, entry.mode);
  }
  return { ops, skipped };
}
