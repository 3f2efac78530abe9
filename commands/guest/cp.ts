/**
 * `banger vm cp SRC... DEST`: files in and out of a VM with docker cp's semantics. One
 * side is `VM:PATH`; files and directories (recursively) keep their modes and mtimes;
 * `-` is a tar stream on stdin (into the VM) or stdout (out of it). Bytes stream through
 * `tar` on both ends and ssh between them, never whole in memory, counted for a progress
 * line on a terminal. Both ends unpack into a staging directory beside DEST and rename
 * into place only once everything arrived, so a failed copy leaves nothing at DEST.
 *
 * @module
 */

import { basename, dirname, resolve } from "node:path";
import { vmSsh } from "../../daemon/api/vm.ts";
import { callDaemon } from "../client/daemon_control.ts";
import { type CliEnv, CliError } from "../env.ts";
import { UsageError } from "../command_line.ts";
import { trustedSshArgv } from "./session.ts";
import { formatSize } from "../../daemon/api/size.ts";

/** One side of a copy. */
export type CopyEnd = { vm: string; path: string } | { host: string };

/** The sources and destination of a `vm cp`, with exactly one side in a VM. */
export interface CopyPlan {
  direction: "in" | "out";
  vm: string;
  sources: string[];
  dest: string;
}

/**
 * Reads `VM:PATH` (a VM name, a colon, a path) or a host path. A path with a `/` before
 * its first `:` is a host path (`./a:b` copies the local file `a:b`). Pure.
 */
export function parseCopyEnd(text: string): CopyEnd {
  const colon = text.indexOf(":");
  const slash = text.indexOf("/");
  if (colon > 0 && (slash === -1 || slash > colon)) {
    return { vm: text.slice(0, colon), path: text.slice(colon + 1) || "." };
  }
  return { host: text };
}

/**
 * Plans a copy from the command line's operands. Pure.
 *
 * @throws {UsageError} when no side or both sides are in a VM, sources span VMs, or `-`
 *   is mixed with other sources.
 */
export function planCopy(operands: readonly string[]): CopyPlan {
  if (operands.length < 2) throw new UsageError("vm cp needs a source and a destination");
  const ends = operands.map(parseCopyEnd);
  const dest = ends[ends.length - 1];
  const sources = ends.slice(0, -1);
  if ("vm" in dest) {
    if (sources.some((s) => "vm" in s)) {
      throw new UsageError(
        "vm cp copies between the host and one VM: only one side may be VM:PATH",
      );
    }
    const paths = sources.map((s) => ("host" in s ? s.host : ""));
    if (paths.includes("-") && paths.length > 1) {
      throw new UsageError('vm cp: "-" (a tar stream on stdin) must be the only source');
    }
    return { direction: "in", vm: dest.vm, sources: paths, dest: dest.path };
  }
  const vms = new Set(sources.map((s) => ("vm" in s ? s.vm : "")));
  if (vms.has("") || vms.size !== 1) {
    throw new UsageError(
      "vm cp needs VM:PATH on one side: banger vm cp ./dir dev:/root/ or banger vm cp dev:/etc/hosts .",
    );
  }
  return {
    direction: "out",
    vm: [...vms][0],
    sources: sources.map((s) => ("vm" in s ? s.path : "")),
    dest: dest.host,
  };
}

// Runs in the guest: checks every source, then writes one tar of them to stdout.
export const GUEST_PACK = `set -e
for p in "$@"; do [ -e "$p" ] || [ -L "$p" ] || { echo "banger-cp: no such file or directory: $p" >&2; exit 3; }; done
for p in "$@"; do set -- "$@" -C "$(dirname -- "$p")" "$(basename -- "$p")"; shift; done
exec tar -cf - --numeric-owner "$@"`;

/**
 * The last member of every archive banger sends: tar may take a stream cut at a member
 * boundary for a whole one, so the guest renames into place only once this arrived.
 */
export const COMPLETE_MARKER = ".banger-cp-complete";

// Runs in the guest: unpacks stdin beside DEST, then renames into place (or into DEST
// when it is a directory). Nothing is left at DEST when anything fails. With $2 = 1 the
// archive must end with the marker member.
export const GUEST_UNPACK = `set -e
dest=$1
marked=\${2:-}
case $dest in */) into=1 ;; *) into= ;; esac
dest=\${dest%/}; [ -n "$dest" ] || dest=/
[ -d "$dest" ] && into=1
parent=$dest; [ -n "$into" ] || parent=$(dirname -- "$dest")
[ -d "$parent" ] || { echo "banger-cp: no such directory: $parent" >&2; exit 3; }
tmp=$(mktemp -d "$parent/.banger-cp-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
tar -xpf - -C "$tmp" --numeric-owner
if [ -n "$marked" ]; then
  [ -e "$tmp/${COMPLETE_MARKER}" ] || { echo "banger-cp: the copy ended early" >&2; exit 3; }
  rm -f "$tmp/${COMPLETE_MARKER}"
fi
n=$(ls -A "$tmp" | wc -l)
if [ -n "$into" ]; then
  for e in "$tmp"/* "$tmp"/.[!.]* "$tmp"/..?*; do [ -e "$e" ] || [ -L "$e" ] || continue; rm -rf "$dest/\${e##*/}"; mv "$e" "$dest/"; done
else
  [ "$n" = 1 ] || { echo "banger-cp: $n entries cannot all be named $dest" >&2; exit 3; }
  for e in "$tmp"/* "$tmp"/.[!.]* "$tmp"/..?*; do [ -e "$e" ] || [ -L "$e" ] || continue; rm -rf "$dest"; mv "$e" "$dest"; done
fi`;

/**
 * The host tar's arguments for sending `paths`: like docker cp, what lands in the guest is
 * root's, with its modes and mtimes; the marker in `markerDir` goes last.
 */
export function hostPackArgs(paths: readonly string[], markerDir: string): string[] {
  return [
    "-cf",
    "-",
    "--owner=0",
    "--group=0",
    "--numeric-owner",
    ...paths.flatMap((p) => ["-C", dirname(p), basename(p)]),
    "-C",
    markerDir,
    COMPLETE_MARKER,
  ];
}

/** A temporary directory holding the empty marker file. */
async function markerDir(): Promise<{ path: string } & Disposable> {
  const path = await Deno.makeTempDir({ prefix: "banger-cp-" });
  await Deno.writeFile(`${path}/${COMPLETE_MARKER}`, new Uint8Array());
  return { path, [Symbol.dispose]: () => Deno.removeSync(path, { recursive: true }) };
}

/** Runs a planned copy; returns the exit code. */
export async function runCopy(env: CliEnv, plan: CopyPlan): Promise<number> {
  return plan.direction === "in" ? await copyIn(env, plan) : await copyOut(env, plan);
}

async function guestSsh(
  env: CliEnv,
  vm: string,
  script: string,
  args: string[],
): Promise<string[]> {
  const inv = await callDaemon(env, vmSsh, {
    ref: vm,
    command: ["sh", "-c", script, "banger-cp", ...args],
    tty: false,
  });
  return trustedSshArgv(inv.argv, Deno.statSync(env.paths.socket).uid, Deno.uid());
}

async function copyIn(env: CliEnv, plan: CopyPlan): Promise<number> {
  const stream = plan.sources[0] === "-";
  const locals = stream ? [] : plan.sources.map((s) => resolve(s));
  for (const p of locals) {
    if (!(await Deno.lstat(p).then(() => true, () => false))) {
      throw new CliError(`Cannot copy "${p}": no such file or directory`);
    }
  }
  const ssh = await guestSsh(env, plan.vm, GUEST_UNPACK, [plan.dest, stream ? "" : "1"]);
  const remote = new Deno.Command(ssh[0], {
    args: ssh.slice(1),
    stdin: "piped",
    stdout: "inherit",
    stderr: "piped",
  }).spawn();
  const progress = new Progress(env);
  let packer: Deno.ChildProcess | undefined;
  let source: ReadableStream<Uint8Array>;
  using marker = await markerDir();
  if (stream) {
    source = Deno.stdin.readable;
  } else {
    packer = new Deno.Command("tar", {
      args: hostPackArgs(locals, marker.path),
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    source = packer.stdout;
  }
  const piping = source.pipeThrough(progress.counter()).pipeTo(remote.stdin).catch(() => {});
  const [packed, unpacked, remoteErr] = await Promise.all([
    packer ? finished(packer) : undefined,
    remote.status,
    new Response(remote.stderr).text(),
    piping,
  ]);
  progress.done();
  if (packed && !packed.success) throw new CliError(`Cannot read the sources: ${packed.stderr}`);
  return finish(unpacked.code, remoteErr, `${plan.vm}:${plan.dest}`, progress);
}

async function copyOut(env: CliEnv, plan: CopyPlan): Promise<number> {
  const ssh = await guestSsh(env, plan.vm, GUEST_PACK, plan.sources);
  const remote = new Deno.Command(ssh[0], {
    args: ssh.slice(1),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const progress = new Progress(env);
  if (plan.dest === "-") {
    await remote.stdout.pipeThrough(progress.counter()).pipeTo(Deno.stdout.writable, {
      preventClose: true,
    }).catch(() => {});
    const [status, err] = await Promise.all([remote.status, new Response(remote.stderr).text()]);
    progress.done();
    return finish(status.code, err, "stdout", progress);
  }
  const dest = resolve(plan.dest);
  const destIsDir = plan.dest.endsWith("/") ||
    (await Deno.stat(dest).then((s) => s.isDirectory, () => false));
  const parent = destIsDir ? dest : dirname(dest);
  if (!(await Deno.stat(parent).then((s) => s.isDirectory, () => false))) {
    remote.kill();
    await remote.status;
    throw new CliError(`Cannot copy to "${plan.dest}": no such directory "${parent}"`);
  }
  const staging = await Deno.makeTempDir({ dir: parent, prefix: ".banger-cp-" });
  try {
    const unpacker = new Deno.Command("tar", {
      args: ["-xpf", "-", "-C", staging, "--no-same-owner"],
      stdin: "piped",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const piping = remote.stdout.pipeThrough(progress.counter()).pipeTo(unpacker.stdin).catch(
      () => {},
    );
    const [status, err, unpacked] = await Promise.all([
      remote.status,
      new Response(remote.stderr).text(),
      finished(unpacker),
      piping,
    ]);
    progress.done();
    const code = finish(status.code, err, `${plan.vm}:${plan.sources.join(" ")}`, progress);
    if (!unpacked.success) {
      throw new CliError(`Cannot write to "${plan.dest}": ${unpacked.stderr}`);
    }
    const entries = [...Deno.readDirSync(staging)].map((e) => e.name);
    if (destIsDir) {
      for (const e of entries) {
        await Deno.remove(`${dest}/${e}`, { recursive: true }).catch(() => {});
        await Deno.rename(`${staging}/${e}`, `${dest}/${e}`);
      }
    } else {
      if (entries.length !== 1) {
        throw new CliError(`Cannot copy ${entries.length} entries to one name "${plan.dest}"`, {
          hint: "give a directory as the destination",
        });
      }
      await Deno.remove(dest, { recursive: true }).catch(() => {});
      await Deno.rename(`${staging}/${entries[0]}`, dest);
    }
    return code;
  } finally {
    await Deno.remove(staging, { recursive: true }).catch(() => {});
  }
}

/** A local tar's exit and its stderr (its stdout or stdin is one end of the copy's pipe). */
async function finished(child: Deno.ChildProcess): Promise<{ success: boolean; stderr: string }> {
  const [status, stderr] = await Promise.all([child.status, new Response(child.stderr).text()]);
  return { success: status.success, stderr: stderr.trim() };
}

/** Turns the remote end's status into an exit code, or a clear error. */
function finish(code: number, stderr: string, what: string, progress: Progress): number {
  const said = stderr.split("\n").filter((l) => l.startsWith("banger-cp: ")).map((l) =>
    l.slice("banger-cp: ".length)
  );
  if (code === 3 && said.length) throw new CliError(`Cannot copy ${what}: ${said.join("; ")}`);
  if (code === 255) throw new CliError(`Cannot reach the VM over SSH: ${stderr.trim()}`);
  if (code !== 0) {
    throw new CliError(`Cannot copy ${what}: ${stderr.trim() || `exit code ${code}`}`);
  }
  progress.summary();
  return 0;
}

/** Counts the bytes passing and, on a terminal, shows how far a large copy is. */
class Progress {
  #bytes = 0;
  #shown = 0;
  readonly #start = Date.now();
  readonly #env: CliEnv;

  constructor(env: CliEnv) {
    this.#env = env;
  }

  counter(): TransformStream<Uint8Array, Uint8Array> {
    return new TransformStream({
      transform: (chunk, controller) => {
        this.#bytes += chunk.length;
        const now = Date.now();
        if (this.#env.stderrIsTty && now - this.#shown > 500 && this.#bytes > 8 << 20) {
          this.#shown = now;
          this.#env.err(`\r${this.#line()}`);
        }
        controller.enqueue(chunk);
      },
    });
  }

  done(): void {
    if (this.#shown) this.#env.err("\r\x1b[K");
  }

  summary(): void {
    if (this.#env.stderrIsTty && this.#bytes > 8 << 20) this.#env.err(`${this.#line()}\n`);
  }

  #line(): string {
    const s = Math.max(0.001, (Date.now() - this.#start) / 1000);
    return `copied ${formatSize(this.#bytes)} (${formatSize(this.#bytes / s)}/s)`;
  }
}
