/**
 * The command-line layer: a declarative command tree, a parser that turns argv into an
 * {@linkcode Invocation}, help text, and "did you mean" suggestions. A wrong command line
 * throws {@linkcode UsageError} (exit code 2).
 *
 * @module
 */

/** What a flag or argument completes to in the shell. */
export type Completer = "vm" | "image" | "kernel" | "file" | "dir" | readonly string[];

/** One `--flag`. */
export interface FlagDef {
  /** Long name without dashes. */
  name: string;
  /** Single-letter alias. */
  short?: string;
  /** `bool` takes no value; `list` may repeat. */
  kind: "bool" | "string" | "number" | "list";
  /** One line for `--help`. */
  help: string;
  /** Value name shown in help, e.g. `SIZE`. */
  placeholder?: string;
  /** Shell completion for the value. */
  complete?: Completer;
  /** Left out of help and completion. */
  hidden?: boolean;
}

/** One positional argument. */
export interface ArgDef {
  name: string;
  optional?: boolean;
  /** Takes every remaining positional. */
  variadic?: boolean;
  complete?: Completer;
}

/** What a command receives after parsing. */
export interface Invocation {
  /** Command path, e.g. `["vm", "run"]`. */
  path: string[];
  /** Positional arguments. */
  args: string[];
  /** Everything after `--`, when the command accepts it. */
  rest: string[] | undefined;
  /** Flag values by long name. */
  flags: Map<string, string | string[] | true>;
}

/** A node of the command tree. */
export interface CommandDef<Env = unknown> {
  name: string;
  /** Other names that run it, as Docker and gh spell them (`rm` for `delete`, `ls`). */
  aliases?: string[];
  /** One line for lists. */
  summary: string;
  /** Paragraph for `--help`. */
  description?: string;
  /** Shown under "Examples:". */
  examples?: string[];
  flags?: FlagDef[];
  args?: ArgDef[];
  /** Accepts `-- cmd args…`; the text names it in help. */
  rest?: string;
  subcommands?: CommandDef<Env>[];
  /** Implementation; returns the exit code. */
  run?: (inv: Invocation, env: Env) => Promise<number | void>;
  /**
   * Loads this group's full definition on demand (its subcommands and their code), so a
   * CLI call only loads the group it uses.
   */
  load?: () => Promise<CommandDef<Env>>;
  hidden?: boolean;
}

/** A wrong command line: printed as one line plus a pointer to `--help`, exit code 2. */
export class UsageError extends Error {
  readonly exitCode = 2;
  constructor(message: string, readonly helpPath: string[] = []) {
    super(message);
    this.name = "UsageError";
  }
}

/** Flags every command accepts. */
export const GLOBAL_FLAGS: FlagDef[] = [
  { name: "help", short: "h", kind: "bool", help: "Show help for the command" },
  { name: "debug", kind: "bool", help: "Print stack traces with errors" },
];

/**
 * Replaces lazy groups (`load`) in `root` with their definitions: only the one named by
 * `argv[0]`, or all of them when `all` (help, completion).
 */
export async function loadGroups<Env>(
  root: CommandDef<Env>,
  argv: readonly string[],
  all: boolean,
): Promise<void> {
  const subs = root.subcommands ?? [];
  for (let i = 0; i < subs.length; i++) {
    const load = subs[i].load;
    if (load && (all || subs[i].name === argv[0])) subs[i] = await load();
  }
}

/** The result of {@linkcode parseArgv}: a runnable command or a help request. */
export interface Parsed<Env> {
  command: CommandDef<Env>;
  invocation: Invocation;
  help: boolean;
}

/**
 * Parses argv against the tree rooted at `root`.
 *
 * @throws {UsageError} for unknown commands or flags, missing or extra arguments, or
 *   values that do not fit the flag.
 */
export function parseArgv<Env>(root: CommandDef<Env>, argv: readonly string[]): Parsed<Env> {
  let command = root;
  const path: string[] = [];
  let i = 0;
  // Walk down subcommands first: `banger vm run …`.
  while (i < argv.length && command.subcommands?.length) {
    const word = argv[i];
    if (word.startsWith("-")) break;
    const next = command.subcommands.find((c) => c.name === word || c.aliases?.includes(word));
    if (!next) {
      const names = command.subcommands.filter((c) => !c.hidden).map((c) => c.name);
      const guess = didYouMean(word, names);
      throw new UsageError(
        `Unknown command "${word}" for "${["banger", ...path].join(" ")}"${
          guess ? ` (did you mean "${guess}"?)` : ""
        }`,
        path,
      );
    }
    command = next;
    path.push(next.name);
    i++;
  }
  const flagDefs = [...GLOBAL_FLAGS, ...(command.flags ?? [])];
  const flags = new Map<string, string | string[] | true>();
  const args: string[] = [];
  let rest: string[] | undefined;
  for (; i < argv.length; i++) {
    const word = argv[i];
    if (word === "--") {
      if (command.rest === undefined) {
        throw new UsageError(`"banger ${path.join(" ")}" does not take a command after "--"`, path);
      }
      rest = argv.slice(i + 1);
      break;
    }
    if (word.startsWith("-") && word !== "-") {
      const eq = word.indexOf("=");
      const key = word.startsWith("--") ? word.slice(2, eq >= 0 ? eq : undefined) : undefined;
      const def = key !== undefined
        ? flagDefs.find((f) => f.name === key)
        : word.length === 2
        ? flagDefs.find((f) => f.short === word[1])
        : undefined;
      if (!def) {
        const guess = key ? didYouMean(key, flagDefs.map((f) => f.name)) : undefined;
        throw new UsageError(
          `Unknown flag "${word}" for "banger ${path.join(" ")}"${
            guess ? ` (did you mean "--${guess}"?)` : ""
          }`,
          path,
        );
      }
      if (def.kind === "bool") {
        if (eq >= 0) {
          const v = word.slice(eq + 1);
          if (v !== "true" && v !== "false") {
            throw new UsageError(`Flag "--${def.name}" takes no value, got "${v}"`, path);
          }
          if (v === "true") flags.set(def.name, true);
          else flags.delete(def.name);
        } else flags.set(def.name, true);
        continue;
      }
      let value: string;
      if (eq >= 0) value = word.slice(eq + 1);
      else {
        if (i + 1 >= argv.length) {
          throw new UsageError(`Flag "--${def.name}" needs a value`, path);
        }
        value = argv[++i];
      }
      if (def.kind === "number" && !/^-?\d+$/.test(value)) {
        throw new UsageError(`Flag "--${def.name}" must be a whole number, got "${value}"`, path);
      }
      if (def.kind === "list") {
        const prev = flags.get(def.name);
        flags.set(def.name, [...(Array.isArray(prev) ? prev : []), value]);
      } else flags.set(def.name, value);
      continue;
    }
    args.push(word);
  }
  const help = flags.has("help");
  if (!help) checkArgs(command, path, args);
  return { command, invocation: { path, args, rest, flags }, help };
}

function checkArgs<Env>(command: CommandDef<Env>, path: string[], args: string[]): void {
  if (!command.run) {
    if (command.subcommands?.length) {
      throw new UsageError(
        `"banger ${path.join(" ")}" needs a subcommand: ${
          command.subcommands.filter((c) => !c.hidden).map((c) => c.name).join(", ")
        }`,
        path,
      );
    }
    return;
  }
  const defs = command.args ?? [];
  const required = defs.filter((a) => !a.optional && !a.variadic).length;
  const variadic = defs.some((a) => a.variadic);
  if (args.length < required) {
    const missing = defs.filter((a) => !a.optional)[args.length];
    throw new UsageError(
      `"banger ${path.join(" ")}" needs ${missing ? missing.name.toUpperCase() : "more arguments"}`,
      path,
    );
  }
  if (!variadic && args.length > defs.length) {
    throw new UsageError(
      `"banger ${path.join(" ")}" got an unexpected argument "${args[defs.length]}"`,
      path,
    );
  }
  const firstVariadic = defs.find((a) => a.variadic && !a.optional);
  if (firstVariadic && args.length < defs.indexOf(firstVariadic) + 1) {
    throw new UsageError(
      `"banger ${path.join(" ")}" needs at least one ${firstVariadic.name.toUpperCase()}`,
      path,
    );
  }
}

/** Reads flags of an {@linkcode Invocation} with the right types. */
export class Flags {
  constructor(private readonly inv: Invocation) {}

  bool(name: string): boolean {
    return this.inv.flags.get(name) === true;
  }

  string(name: string): string | undefined {
    const v = this.inv.flags.get(name);
    return typeof v === "string" ? v : undefined;
  }

  number(name: string): number | undefined {
    const v = this.string(name);
    return v === undefined ? undefined : Number(v);
  }

  list(name: string): string[] {
    const v = this.inv.flags.get(name);
    return Array.isArray(v) ? v : [];
  }
}

/** Renders `--help` for a command. */
export function renderHelp<Env>(command: CommandDef<Env>, path: string[]): string {
  const name = ["banger", ...path].join(" ");
  const out: string[] = [];
  const argText = (command.args ?? []).map((a) => {
    const n = a.name.toUpperCase() + (a.variadic ? "..." : "");
    return a.optional ? `[${n}]` : n;
  });
  const subs = (command.subcommands ?? []).filter((c) => !c.hidden);
  const usage = [name];
  if (subs.length) usage.push("<command>");
  usage.push(...argText);
  if ((command.flags ?? []).some((f) => !f.hidden)) usage.push("[flags]");
  if (command.rest !== undefined) usage.push(`[-- ${command.rest}]`);
  out.push(`Usage: ${usage.join(" ")}`);
  if (command.aliases?.length) {
    const parent = ["banger", ...path.slice(0, -1)].join(" ");
    out.push(`Aliases: ${command.aliases.map((a) => `${parent} ${a}`).join(", ")}`);
  }
  out.push("", command.description ?? command.summary);
  if (subs.length) {
    out.push("", "Commands:");
    const w = Math.max(...subs.map((c) => c.name.length));
    for (const c of subs) {
      const also = c.aliases?.length ? ` (also: ${c.aliases.join(", ")})` : "";
      out.push(`  ${c.name.padEnd(w)}  ${c.summary}${also}`);
    }
  }
  const flags = [...(command.flags ?? []), ...GLOBAL_FLAGS].filter((f) => !f.hidden);
  const labels = flags.map((f) =>
    `${f.short ? `-${f.short}, ` : "    "}--${f.name}${
      f.kind === "bool" ? "" : ` ${f.placeholder ?? f.kind.toUpperCase()}`
    }`
  );
  const w = Math.max(...labels.map((l) => l.length));
  out.push("", "Flags:");
  flags.forEach((f, i) => out.push(`  ${labels[i].padEnd(w)}  ${f.help}`));
  if (command.examples?.length) {
    out.push("", "Examples:");
    for (const e of command.examples) out.push(`  ${e}`);
  }
  if (subs.length) out.push("", `Run "${name} <command> --help" for more about a command.`);
  return out.join("\n") + "\n";
}

/** The closest candidate within edit distance 2, for "did you mean". */
export function didYouMean(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDist = 3;
  for (const c of candidates) {
    const d = editDistance(word, c);
    if (d < bestDist) {
      bestDist = d;
      best = c;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length];
}
