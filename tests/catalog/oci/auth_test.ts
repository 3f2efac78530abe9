import { assertEquals, assertRejects } from "../../fixtures/assert.ts";
import { startHttpServer } from "../../fixtures/http_server.ts";
import { OciError } from "../../../catalog/errors.ts";
import { loadDockerCredentials, parseChallenge, RegistryAuth } from "../../../catalog/oci/auth.ts";

Deno.test("parseChallenge() reads quoted parameters, commas inside quotes and escapes", () => {
  assertEquals(
    parseChallenge(
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push"',
    ),
    {
      scheme: "bearer",
      params: {
        realm: "https://auth.docker.io/token",
        service: "registry.docker.io",
        scope: "repository:library/alpine:pull,push",
      },
    },
  );
  assertEquals(parseChallenge('Basic realm="a \\"quoted\\" realm"'), {
    scheme: "basic",
    params: { realm: 'a "quoted" realm' },
  });
  assertEquals(parseChallenge("Bearer realm=https://x/t, error=invalid_token")?.params, {
    realm: "https://x/t",
    error: "invalid_token",
  });
  assertEquals(parseChallenge(null), undefined);
  assertEquals(parseChallenge(""), undefined);
});

async function withConfig(value: unknown, fn: (file: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "banger-auth-" });
  try {
    const file = `${dir}/config.json`;
    await Deno.writeTextFile(file, typeof value === "string" ? value : JSON.stringify(value));
    await fn(file);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("loadDockerCredentials() finds auths entries by host, URL key and Docker Hub alias", async () => {
  await withConfig({
    auths: {
      "ghcr.io": { auth: btoa("gh:tok:en") },
      "https://index.docker.io/v1/": { auth: btoa("hub:pw") },
      "http://127.0.0.1:5000/v2/": { username: "local", password: "pw2" },
      "quay.io": {},
    },
  }, async (configFile) => {
    assertEquals(await loadDockerCredentials("ghcr.io", { configFile }), {
      username: "gh",
      password: "tok:en",
    });
    assertEquals(await loadDockerCredentials("docker.io", { configFile }), {
      username: "hub",
      password: "pw",
    });
    assertEquals(await loadDockerCredentials("127.0.0.1:5000", { configFile }), {
      username: "local",
      password: "pw2",
    });
    assertEquals(await loadDockerCredentials("quay.io", { configFile }), undefined);
    assertEquals(await loadDockerCredentials("example.com", { configFile }), undefined);
  });
  assertEquals(
    await loadDockerCredentials("ghcr.io", { configFile: "/nonexistent/config.json" }),
    undefined,
  );
});

Deno.test("loadDockerCredentials() reports a malformed config naming the file", async (t) => {
  await t.step("not JSON", async () => {
    await withConfig("{nope", async (configFile) => {
      await assertRejects(
        () => loadDockerCredentials("ghcr.io", { configFile }),
        OciError,
        configFile,
      );
    });
  });
  await t.step("auth without a colon", async () => {
    await withConfig({ auths: { "ghcr.io": { auth: btoa("nocolon") } } }, async (configFile) => {
      await assertRejects(
        () => loadDockerCredentials("ghcr.io", { configFile }),
        OciError,
        "user:password",
      );
    });
  });
});

Deno.test("loadDockerCredentials() honours DOCKER_CONFIG when no file is given", async () => {
  await withConfig({ auths: { "ghcr.io": { auth: btoa("env:pw") } } }, async (file) => {
    const dir = file.replace(/\/config\.json$/, "");
    const code = `import { loadDockerCredentials } from "${
      new URL("../../../catalog/oci/auth.ts", import.meta.url).href
    }"; console.log(JSON.stringify(await loadDockerCredentials("ghcr.io")));`;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--no-check", code],
      env: { DOCKER_CONFIG: dir, HOME: "/nonexistent" },
    }).output();
    assertEquals(new TextDecoder().decode(out.stdout).trim(), '{"username":"env","password":"pw"}');
  });
});

Deno.test("RegistryAuth caches a token per scope until it expires", async () => {
  let issued = 0;
  await using server = await startHttpServer((req) => {
    const scope = new URL(req.url).searchParams.get("scope");
    issued++;
    return Response.json({ access_token: `t${issued}-${scope}`, expires_in: 120 });
  });
  let now = 1_000_000;
  const auth = new RegistryAuth("example", { allowHttpRealm: true, now: () => now });
  const challenge = `Bearer realm="${server.url}/token",service="svc"`;
  assertEquals(auth.headers("repository:a:pull"), {});
  await auth.answer(challenge, "repository:a:pull", {});
  assertEquals(auth.headers("repository:a:pull"), { Authorization: "Bearer t1-repository:a:pull" });
  assertEquals(auth.headers("repository:b:pull"), {});
  now += 114_000;
  assertEquals(auth.headers("repository:a:pull"), { Authorization: "Bearer t1-repository:a:pull" });
  now += 2_000;
  assertEquals(auth.headers("repository:a:pull"), {});
  assertEquals(issued, 1);
});

Deno.test("RegistryAuth.answer() refuses challenges it cannot meet, with permission_denied", async (t) => {
  const auth = () => new RegistryAuth("registry.example.com");
  for (
    const [name, header, why] of [
      ["Basic without credentials", 'Basic realm="r"', "none are configured"],
      ["an unknown scheme", "Negotiate abc", "unsupported authentication challenge"],
      ["no header", null, "unsupported authentication challenge"],
      [
        "a plain-http realm for a remote registry",
        'Bearer realm="http://auth.example.com/t"',
        "is not https",
      ],
    ] as const
  ) {
    await t.step(name, async () => {
      const err = await assertRejects(() => auth().answer(header, "s", {}), OciError, why);
      assertEquals(err.code, "permission_denied");
    });
  }
  await t.step("a token service that says 401", async () => {
    await using server = await startHttpServer(() => new Response("no", { status: 401 }));
    const a = new RegistryAuth("r", { allowHttpRealm: true });
    await assertRejects(
      () => a.answer(`Bearer realm="${server.url}/t"`, "s", {}),
      OciError,
      "refused",
    );
  });
});

/** Fake `docker-credential-*` helpers in a directory used as their PATH. */
async function withHelpers(fn: (path: string, asked: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "banger-credhelper-" });
  try {
    const asked = `${dir}/asked`;
    const helper = (name: string, body: string) =>
      Deno.writeTextFile(`${dir}/docker-credential-${name}`, `#!/bin/sh\n${body}\n`, {
        mode: 0o755,
      });
    await helper(
      "fake",
      `[ "$1" = get ] || exit 2
read -r url; echo "$url" >> ${asked}
case "$url" in
  ghcr.io) echo '{"ServerURL":"ghcr.io","Username":"gh","Secret":"from-helper"}' ;;
  https://index.docker.io/v1/) echo '{"ServerURL":"x","Username":"hub","Secret":"hub-secret"}' ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac`,
    );
    await helper("broken", 'echo "error: gpg: decryption failed"; exit 1');
    await helper("garbled", "echo 'not json'");
    await helper("identity", `echo '{"ServerURL":"ghcr.io","Username":"<token>","Secret":"r"}'`);
    await fn(`${dir}:/usr/bin:/bin`, asked);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("loadDockerCredentials() asks credHelpers, then credsStore, then auths, as Docker does", async () => {
  await withHelpers(async (helperPath, asked) => {
    await withConfig({
      credsStore: "fake",
      credHelpers: { "quay.io": "identity" },
      auths: { "example.com": { auth: btoa("file:pw") } },
    }, async (configFile) => {
      const load = (registry: string) =>
        loadDockerCredentials(registry, { configFile, helperPath });
      assertEquals(await load("ghcr.io"), { username: "gh", password: "from-helper" });
      assertEquals(await load("docker.io"), { username: "hub", password: "hub-secret" });
      // Not in the helper: the auths entry, as Docker's file store would give it.
      assertEquals(await load("example.com"), { username: "file", password: "pw" });
      assertEquals(await load("nothing.example"), undefined);
      // An identity token (OAuth refresh token) is not a password: anonymous.
      assertEquals(await load("quay.io"), undefined);
      assertEquals((await Deno.readTextFile(asked)).trim().split("\n"), [
        "ghcr.io",
        "https://index.docker.io/v1/",
        "example.com",
        "nothing.example",
      ]);
    });
  });
});

Deno.test("loadDockerCredentials() says which helper failed and how", async (t) => {
  await withHelpers(async (helperPath) => {
    const cases: [string, string, string][] = [
      ["broken", "from docker-credential-broken: error: gpg: decryption failed", "unavailable"],
      [
        "garbled",
        "docker-credential-garbled answered for ghcr.io: it is not JSON",
        "invalid_argument",
      ],
      ["missing", "docker-credential-missing is not on PATH", "failed_precondition"],
      ["../evil", 'helper "../evil": not a helper name', "invalid_argument"],
    ];
    for (const [helper, message, code] of cases) {
      await t.step(helper, async () => {
        await withConfig({ credHelpers: { "ghcr.io": helper } }, async (configFile) => {
          const err = await assertRejects(
            () => loadDockerCredentials("ghcr.io", { configFile, helperPath }),
            OciError,
            message,
          );
          assertEquals(err.code, code);
        });
      });
    }
  });
});
