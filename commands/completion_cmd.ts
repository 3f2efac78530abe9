/**
 * `banger completion bash|zsh|fish` and the hidden `banger __complete` the scripts call:
 * every shell asks banger itself, so completions always match the command tree and can
 * offer live VM, image and kernel names from a running daemon.
 *
 * @module
 */

import { type CommandDef, type Completer, GLOBAL_FLAGS } from "./command_line.ts";
import type { CliEnv } from "./env.ts";

const SCRIPTS: Record<string, string> = {
  bash: `# banger bash completion: eval "$(banger completion bash)"
_banger() {
  local IFS=$'\\n'
  COMPREPLY=($(banger __complete "\${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
}
complete -o default -F _banger banger
`,
  zsh: `#compdef banger
# banger zsh completion: eval "$(banger completion zsh)"
_banger() {
  local -a candidates
  candidates=("\${(@f)$(banger __complete "\${(@)words[2,CURRENT]}" 2>/dev/null)}")
  if (( \${#candidates[@]} )) && [[ -n "\${candidates[1]}" ]]; then
    compadd -- "\${candidates[@]}"
  else
    _files
  fi
}
compdef _banger banger
`,
  // Like bash's -o default and zsh's _files: where banger offers nothing (a PATH or FILE
  // argument), the shell completes paths.
  fish: `# banger fish completion: banger completion fish | source
function __banger_complete
    set -l candidates (banger __complete (commandline -opc)[2..-1] (commandline -ct) 2>/dev/null)
    if test (count $candidates) -gt 0
        printf '%s\\n' $candidates
    else
        __fish_complete_path (commandline -ct)
    end
end
complete -c banger -f -a '(__banger_complete)'
`,
};

/** `banger completion <shell>`. */
export const completionCommand: CommandDef<CliEnv> = {
  name: "completion",
  summary: "Print a shell completion script (bash, zsh or fish)",
  args: [{ name: "shell", complete: ["bash", "zsh", "fish"] }],
  examples: [
    'eval "$(banger completion bash)"   # in ~/.bashrc',
    'eval "$(banger completion zsh)"    # in ~/.zshrc',
    "banger completion fish > ~/.config/fish/completions/banger.fish",
  ],
  run: (inv, env) => {
    const script = SCRIPTS[inv.args[0]];
    if (!script) {
      env.err(`error: Unknown shell "${inv.args[0]}" (choose bash, zsh or fish)\n`);
      return Promise.resolve(2);
    }
    env.out(script);
    return Promise.resolve(0);
  },
};

/** Live names for a completer, from the daemon when it is already running. */
export type NameSource = (kind: "vm" | "image" | "kernel") => Promise<string[]>;

/**
 * Candidates for the last word of `words` (the words after `banger`, the last one being
 * the partial word under the cursor).
 */
export async function complete(
  root: CommandDef<CliEnv>,
  words: readonly string[],
  names: NameSource,
): Promise<string[]> {
  // `banger help vm r…` completes like `banger vm r…`, commands only.
  if (words[0] === "help" && words.length > 1) {
    const commands = await complete(root, words.slice(1), () => Promise.resolve([]));
    return commands.filter((c) => !c.startsWith("-"));
  }
  const partial = words.length ? words[words.length - 1] : "";
  const before = words.slice(0, -1);
  let command = root;
  let i = 0;
  while (i < before.length && command.subcommands?.length) {
    const next = command.subcommands.find((c) => c.name === before[i]);
    if (!next) break;
    command = next;
    i++;
  }
  const flags = [...(command.flags ?? []), ...GLOBAL_FLAGS].filter((f) => !f.hidden);
  const prev = before[before.length - 1];
  const valueFlag = prev?.startsWith("--")
    ? flags.find((f) => f.name === prev.slice(2) && f.kind !== "bool")
    : undefined;
  let candidates: string[];
  if (valueFlag) {
    candidates = await expand(valueFlag.complete, names);
  } else if (partial.startsWith("-")) {
    candidates = flags.map((f) => `--${f.name}`);
  } else {
    const subs = (command.subcommands ?? []).filter((c) => !c.hidden).map((c) => c.name);
    const positionals = before.slice(i).filter((w) => !w.startsWith("-")).length;
    const defs = command.args ?? [];
    const arg = defs[Math.min(positionals, defs.length - 1)];
    const argCandidates = arg && (positionals < defs.length || arg.variadic)
      ? await expand(arg.complete, names)
      : [];
    candidates = [...subs, ...argCandidates];
  }
  return candidates.filter((c) => c.startsWith(partial));
}

async function expand(completer: Completer | undefined, names: NameSource): Promise<string[]> {
  if (completer === undefined || completer === "file" || completer === "dir") return [];
  if (typeof completer === "string") return await names(completer).catch(() => []);
  return [...completer];
}
