/**
 * `banger-agent` and `banger-agent.service`: the guest answers banger's questions with one
 * line of JSON. The same script serves vsock (where the VMM has a vsock device) and SSH
 * (`ssh root@guest /usr/local/libexec/banger-agent ports`) where it has none.
 *
 * Requests and answers:
 * - `health` → `{"ok":true,"hostname":"dev","uptime_seconds":12.34,"boot_id":"<uuid>"}`
 * - `ports` → `{"ports":[{"proto":"tcp","address":"0.0.0.0","port":22,"processes":[{"name":"sshd","pid":312}]}]}`
 *   — every listening TCP socket and bound UDP socket, from `ss -Htlnpu` (iproute2),
 *   parsed with awk (mawk and busybox awk both work). IPv6 addresses lose their brackets;
 *   process names keep printable ASCII only, without `"` and `\`, so the JSON is valid.
 * - anything else → `{"error":"unknown request; expected health or ports"}`, exit code 2.
 *
 * The service runs `socat -T 30 VSOCK-LISTEN:1024,fork,reuseaddr` with
 * `EXEC:banger-agent --serve`; `--serve` reads one request line from stdin. It only starts
 * when `/dev/vsock` exists (the vsock modules are loaded by the initramfs).
 *
 * Test seams (environment): `BANGER_AGENT_SS_FILE` parses that file instead of running
 * `ss`; `BANGER_PROC` replaces `/proc`.
 *
 * @module
 */

/** Turns `ss -Htlnpu` lines into the `ports` JSON (single-quote free: it sits in '…'). */
const PORTS_AWK = String.raw`
function esc(s) { gsub(/[^ -~]/, "", s); gsub(/["\\]/, "", s); return s }
BEGIN { printf "{\"ports\":["; n = 0 }
NF >= 5 {
  proto = $1; loc = $5
  port = loc; sub(/.*:/, "", port)
  if (port !~ /^[0-9]+$/) next
  addr = substr(loc, 1, length(loc) - length(port) - 1)
  sub(/^\[/, "", addr); sub(/\]$/, "", addr)
  procs = ""; rest = ""
  for (i = 7; i <= NF; i++) rest = rest " " $i
  while (match(rest, /\("[^"]*",pid=[0-9]+/)) {
    entry = substr(rest, RSTART + 2, RLENGTH - 2)
    name = entry; sub(/",pid=.*/, "", name)
    pid = entry; sub(/.*pid=/, "", pid)
    procs = procs (procs == "" ? "" : ",") "{\"name\":\"" esc(name) "\",\"pid\":" pid "}"
    rest = substr(rest, RSTART + RLENGTH)
  }
  printf "%s{\"proto\":\"%s\",\"address\":\"%s\",\"port\":%d,\"processes\":[%s]}", (n++ ? "," : ""), esc(proto), esc(addr), port, procs
}
END { print "]}" }
`;

/** The guest agent script and its vsock service. */
export const agent = {
  /** Where the script is installed in the guest. */
  scriptPath: "/usr/local/libexec/banger-agent",
  /** The unit's file name under `/etc/systemd/system/`. */
  unitName: "banger-agent.service",
  /** The vsock port the service listens on. */
  vsockPort: 1024,
  /** The script (mode 0755). */
  script: `#!/bin/sh
# banger-agent: answers banger's questions about this guest with one line of JSON.
#   banger-agent health | ports     answer one request
#   banger-agent --serve            read one request line from stdin (vsock service)
set -u
proc=\${BANGER_PROC:-/proc}

health() {
  up=0
  read -r up _ < "$proc/uptime" 2>/dev/null || up=0
  case $up in '' | *[!0-9.]*) up=0 ;; esac
  boot_id=$(tr -cd 'a-f0-9-' < "$proc/sys/kernel/random/boot_id" 2>/dev/null)
  host=$(tr -cd 'A-Za-z0-9._-' < "$proc/sys/kernel/hostname" 2>/dev/null)
  printf '{"ok":true,"hostname":"%s","uptime_seconds":%s,"boot_id":"%s"}\\n' "$host" "$up" "$boot_id"
}

ports() {
  if [ -n "\${BANGER_AGENT_SS_FILE:-}" ]; then cat "$BANGER_AGENT_SS_FILE"; else ss -Htlnpu; fi |
    awk '${PORTS_AWK}'
}

answer() {
  case $1 in
    health) health ;;
    ports) ports ;;
    *) printf '{"error":"unknown request; expected health or ports"}\\n'; return 2 ;;
  esac
}

case \${1:-} in
  --serve)
    request=
    IFS= read -r request || true
    answer "$(printf '%s' "$request" | tr -d '\\r ')"
    ;;
  *) answer "\${1:-}" ;;
esac
`,
  /** The unit (mode 0644), enabled in `multi-user.target`. */
  unit: `[Unit]
Description=banger guest agent on vsock port 1024
ConditionPathExists=/dev/vsock

[Service]
ExecStart=/usr/bin/socat -T 30 VSOCK-LISTEN:1024,fork,reuseaddr "EXEC:/usr/local/libexec/banger-agent --serve"
Restart=on-failure
RestartSec=2

[Install]
WantedBy=multi-user.target
`,
} as const;
