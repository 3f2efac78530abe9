/**
 * A catalog mirror for the smoke suite: serves a directory over HTTP on 127.0.0.1 (run
 * inside the smoke network namespace) and counts requests, which `GET /_counts` returns.
 *
 * Usage: `deno run -A smoke/mirror.ts <dir> <port>`
 *
 * @module
 */

const [dir, port] = Deno.args;
const counts: Record<string, number> = {};

Deno.serve({ hostname: "127.0.0.1", port: Number(port), onListen: () => {} }, async (req) => {
  const path = new URL(req.url).pathname;
  if (path === "/_counts") return Response.json(counts);
  counts[path] = (counts[path] ?? 0) + 1;
  if (path.includes("..")) return new Response("no", { status: 400 });
  try {
    const file = await Deno.open(`${dir}${path}`);
    const { size } = await file.stat();
    return new Response(file.readable, { headers: { "content-length": String(size) } });
  } catch {
    return new Response("not found", { status: 404 });
  }
});
