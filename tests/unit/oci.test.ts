// The OCI pieces without a registry: image references as Istio reads them, the deterministic tar and gzip (read back
// with node's zlib and our reader), both image variants read back the way istio-agent reads them, the layout, the
// registry's authentication challenge, and `spiffe-authz image`'s usage errors.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { after, describe, it } from "node:test";
import { main } from "../../src/cli/main.ts";
import type { CliIO } from "../../src/cli/io.ts";
import { buildWasmImage, extractWasm, gzipStored, MEDIA_TYPES, sha256Digest, tarFiles, untar } from "../../src/oci/image.ts";
import { readLayoutIndex, writeLayout } from "../../src/oci/layout.ts";
import { formatImageReference, isLocalRegistry, parseImageReference } from "../../src/oci/reference.ts";
import { parseChallenge } from "../../src/oci/registry.ts";

const dir = mkdtempSync(join(tmpdir(), "spiffe-authz-oci-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const module = Buffer.concat([Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]), Buffer.alloc(200_000, 7)]);

describe("image references", () => {
  it("parse as the distribution reference grammar does", () => {
    assert.deepEqual(parseImageReference("oci://registry.example.com:5000/team/spiffe-authz:0.1.0"),
      { registry: "registry.example.com:5000", repository: "team/spiffe-authz", tag: "0.1.0", digest: null });
    assert.deepEqual(parseImageReference("localhost/authz"), { registry: "localhost", repository: "authz", tag: "latest", digest: null });
    assert.deepEqual(parseImageReference("authz:1"), { registry: "registry-1.docker.io", repository: "library/authz", tag: "1", digest: null });
    const d = `sha256:${"a".repeat(64)}`;
    assert.deepEqual(parseImageReference(`oci://127.0.0.1:5000/a/b@${d}`), { registry: "127.0.0.1:5000", repository: "a/b", tag: null, digest: d });
    assert.equal(formatImageReference(parseImageReference(`r.io/a:1@${d}`)), `oci://r.io/a:1@${d}`);
    assert.ok(isLocalRegistry("127.0.0.1:5000") && isLocalRegistry("localhost") && !isLocalRegistry("ghcr.io"));
    for (const bad of ["oci://r.io/A", "r.io/a:", "r.io/a@sha256:12", "r.io/a b", "oci://r.io/a:.x"]) {
      assert.throws(() => parseImageReference(bad), /./, bad);
    }
  });
});

describe("the image", () => {
  it("tar and gzip are standard and deterministic", () => {
    const tar = tarFiles([{ name: "plugin.wasm", data: module }, { name: "x.json", data: Buffer.from("{}") }]);
    assert.deepEqual(untar(tar).map((f) => [f.name, f.data.length]), [["plugin.wasm", module.length], ["x.json", 2]]);
    const gz = gzipStored(tar);
    assert.ok(gunzipSync(gz).equals(tar), "node's zlib reads it back");
    assert.ok(gzipStored(tar).equals(gz));
    assert.ok(gunzipSync(gzipStored(Buffer.alloc(0))).length === 0);
  });

  it("both variants: media types istio-agent expects, the module read back, a digest that depends only on the module", async () => {
    const compat = buildWasmImage(module);
    const m = JSON.parse(compat.manifest.toString());
    assert.equal(m.mediaType, MEDIA_TYPES.manifest);
    assert.deepEqual(m.layers.map((l: { mediaType: string }) => l.mediaType), [MEDIA_TYPES.layerTarGzip]);
    assert.equal(m.annotations["module.wasm.image/variant"], "compat");
    const blob = (d: string) => [...compat.blobs].find((b) => b.digest === d)!.data;
    assert.deepEqual(await extractWasm({ manifest: compat.manifest, blob }), { variant: "compat", wasm: module });
    const config = JSON.parse(blob(m.config.digest).toString());
    assert.equal(config.rootfs.diff_ids[0], sha256Digest(gunzipSync(blob(m.layers[0].digest))));

    const oci = buildWasmImage(module, { variant: "oci" });
    const om = JSON.parse(oci.manifest.toString());
    assert.equal(om.config.mediaType, MEDIA_TYPES.wasmConfig);
    assert.deepEqual(om.layers.map((l: { mediaType: string }) => l.mediaType), [MEDIA_TYPES.wasmConfig, MEDIA_TYPES.wasmContent]);
    const oblob = (d: string) => oci.blobs.find((b) => b.digest === d)!.data;
    assert.deepEqual(await extractWasm({ manifest: oci.manifest, blob: oblob }), { variant: "oci", wasm: module });

    assert.equal(buildWasmImage(Buffer.from(module)).digest, compat.digest);
    assert.notEqual(buildWasmImage(Buffer.concat([module, Buffer.from([1])])).digest, compat.digest);
    assert.throws(() => buildWasmImage(Buffer.from("not wasm")), /not a WebAssembly module/);
  });

  it("the layout names each manifest and its variant", async () => {
    const images = [buildWasmImage(module), buildWasmImage(module, { variant: "oci" })];
    await writeLayout(join(dir, "layout"), [{ name: "1", image: images[0] }, { name: "1-oci", image: images[1] }]);
    assert.deepEqual(await readLayoutIndex(join(dir, "layout")), [
      { name: "1", variant: "compat", digest: images[0].digest },
      { name: "1-oci", variant: "oci", digest: images[1].digest },
    ]);
    const hex = images[0].digest.slice(7);
    assert.ok(readFileSync(join(dir, "layout", "blobs", "sha256", hex)).equals(images[0].manifest));
  });
});

describe("the registry client", () => {
  it("reads bearer and basic challenges", () => {
    assert.deepEqual(parseChallenge('Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push"'), {
      scheme: "bearer",
      params: { realm: "https://auth.example.com/token", service: "registry.example.com", scope: "repository:a/b:pull,push" },
    });
    assert.deepEqual(parseChallenge('Basic realm="Registry"'), { scheme: "basic", params: { realm: "Registry" } });
  });
});

describe("spiffe-authz image usage", () => {
  const run = async (...argv: string[]) => {
    let stdout = "";
    let stderr = "";
    const io: CliIO = { stdout: { write: (s: string) => (stdout += s) }, stderr: { write: (s: string) => (stderr += s) }, readStdin: async () => "" };
    return { code: await main(["image", ...argv], io), stdout, stderr };
  };
  it("says what is wrong and exits 2", async () => {
    const cases: [string[], RegExp][] = [
      [[], /nothing to do: give --out DIR, --push REF or both/],
      [["--out", dir, "--variant", "docker"], /invalid --variant "docker"/],
      [["--push", "https://registry.example.com/a"], /an image reference is oci:\/\/REGISTRY\/REPOSITORY:TAG/],
      [["--push", `oci://r.example.com/a@sha256:${"b".repeat(64)}`], /push to a tag/],
      [["--push", "oci://r.example.com/A:1"], /repository component "A"/],
      [["--out", dir, "--wasm", join(dir, "missing.wasm")], /cannot read the module/],
      [["--push", "oci://r.example.com/a:1", "--password-stdin"], /--password-stdin needs --username/],
    ];
    for (const [argv, message] of cases) {
      const r = await run(...argv);
      assert.equal(r.code, 2, argv.join(" "));
      assert.match(r.stderr, message, argv.join(" "));
    }
  });
});
