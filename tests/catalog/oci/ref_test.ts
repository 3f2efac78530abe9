import { assertEquals, assertThrows } from "../../fixtures/assert.ts";
import { OciError } from "../../../catalog/errors.ts";
import { defaultImageName, formatImageRef, parseImageRef } from "../../../catalog/oci/ref.ts";

const DIGEST = `sha256:${"ab".repeat(32)}`;

Deno.test("parseImageRef() applies Docker Hub defaults", async (t) => {
  await t.step("single-component names get library/ and tag latest", () => {
    assertEquals(parseImageRef("debian"), {
      registry: "docker.io",
      endpoint: "registry-1.docker.io",
      repository: "library/debian",
      tag: "latest",
      digest: undefined,
    });
  });
  await t.step("docker.io and index.docker.io name the same registry", () => {
    assertEquals(
      parseImageRef("docker.io/library/debian:bookworm").endpoint,
      "registry-1.docker.io",
    );
    assertEquals(parseImageRef("index.docker.io/debian").repository, "library/debian");
  });
  await t.step("two-component hub names keep their namespace", () => {
    assertEquals(parseImageRef("grafana/grafana:10").repository, "grafana/grafana");
  });
});

Deno.test("parseImageRef() reads registries, ports, tags and digests", async (t) => {
  await t.step("registry with a port", () => {
    const ref = parseImageRef("127.0.0.1:5000/x/y:tag");
    assertEquals([ref.registry, ref.endpoint, ref.repository, ref.tag], [
      "127.0.0.1:5000",
      "127.0.0.1:5000",
      "x/y",
      "tag",
    ]);
  });
  await t.step("localhost is a registry even without a dot", () => {
    assertEquals(parseImageRef("localhost/img").registry, "localhost");
    assertEquals(parseImageRef("localhost:5000/img").repository, "img");
  });
  await t.step("digest only leaves the tag unset", () => {
    const ref = parseImageRef(`ghcr.io/o/r@${DIGEST}`);
    assertEquals([ref.tag, ref.digest], [undefined, DIGEST]);
  });
  await t.step("tag and digest together", () => {
    const ref = parseImageRef(`debian:bookworm@${DIGEST}`);
    assertEquals([ref.tag, ref.digest], ["bookworm", DIGEST]);
    assertEquals(formatImageRef(ref), `docker.io/library/debian:bookworm@${DIGEST}`);
  });
});

Deno.test("parseImageRef() rejects malformed references with the reason", async (t) => {
  const cases: [string, string][] = [
    ["", "empty"],
    ["Debian", "lowercase"],
    ["debian:", "not a valid tag"],
    [`debian:${"a".repeat(129)}`, "not a valid tag"],
    ["debian@sha256:abc", "only sha256 digests"],
    [`debian@md5:${"a".repeat(32)}`, "only sha256"],
    ["a//b", "empty component"],
    ["foo/-bar", 'component "-bar"'],
    ["-bad.example.com/x", "not a valid registry host"],
    [` debian`, "surrounding spaces"],
  ];
  for (const [text, why] of cases) {
    await t.step(`"${text}"`, () => {
      const err = assertThrows(() => parseImageRef(text), OciError, why);
      assertEquals(err.code, "invalid_argument");
    });
  }
});

Deno.test("defaultImageName() derives a DNS label from the reference", () => {
  assertEquals(
    defaultImageName(parseImageRef("docker.io/library/debian:bookworm")),
    "debian-bookworm",
  );
  assertEquals(defaultImageName(parseImageRef("127.0.0.1:5000/team/my_app:V1.2")), "my-app-v1-2");
  assertEquals(defaultImageName(parseImageRef(`alpine@${DIGEST}`)), "alpine-abababababab");
  const long = defaultImageName(parseImageRef(`x/${"a".repeat(80)}:t`));
  assertEquals(long.length <= 63 && /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(long), true);
  assertEquals(defaultImageName(parseImageRef(`x/${"a".repeat(62)}:_t`)), "a".repeat(62));
});
