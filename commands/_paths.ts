/**
 * Paths the user typed, resolved against the directory they typed them in. Under
 * `deno task banger …` the process runs in the project directory and the caller's
 * directory is in `INIT_CWD`; a compiled binary runs where it was started.
 *
 * @module
 */

/** The directory relative paths on the command line are relative to. */
export function userCwd(): string {
  return Deno.env.get("INIT_CWD") || Deno.cwd();
}

/** `path` made absolute against {@linkcode userCwd}, with `.` and `..` resolved. */
export function userPath(path: string): string {
  const joined = path.startsWith("/") ? path : `${userCwd()}/${path}`;
  const out: string[] = [];
  for (const part of joined.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") out.pop();
    else out.push(part);
  }
  return `/${out.join("/")}`;
}
