// Checks an emitted Istio manifest against its CRD in schemas/istio/ with the same machinery that checks input
// policies (ajv, unknown fields, the CRD's CEL rules). The CLI runs it on everything it emits; tests too.

import { Diagnostics, formatDiagnostic, sortDiagnostics } from "../../policy/diagnostics.ts";
import { crdSchema, loadCrd, validateAgainstSchema } from "../../policy/schema.ts";
import { OBJECT_META_FIELDS } from "../../policy/metadata.ts";
import { entry, parseYamlFile, type YMap } from "../../policy/yaml.ts";

/** CRD files by kind. */
export const CRD_FILES: Record<string, string> = {
  WasmPlugin: "wasmplugins.extensions.istio.io.yaml",
  TrafficExtension: "trafficextensions.extensions.istio.io.yaml",
  AuthorizationPolicy: "authorizationpolicies.security.istio.io.yaml",
};

/** Problems of every document of `text`, as `file:line:col: message` lines; empty when all are valid. */
export function validateIstioManifest(text: string, file = "<emitted>"): string[] {
  const diags = new Diagnostics();
  for (const doc of parseYamlFile(file, text, diags)) {
    if (doc.root.kind !== "map") {
      diags.error(doc.pos, "a manifest must be a mapping");
      continue;
    }
    const root: YMap = doc.root;
    const kind = entry(root, "kind")?.value;
    const api = entry(root, "apiVersion")?.value;
    const crdFile = kind?.kind === "scalar" ? CRD_FILES[String(kind.value)] : undefined;
    if (!crdFile || api?.kind !== "scalar") {
      diags.error(doc.pos, "not an Istio resource this project emits");
      continue;
    }
    const crd = loadCrd(crdFile);
    const [group, version] = String(api.value).split("/");
    if (group !== crd.group || !crd.versions.has(version)) {
      diags.error(api.pos, `apiVersion ${JSON.stringify(api.value)} is not served by the ${crd.kind} CRD`);
      continue;
    }
    const md = entry(root, "metadata")?.value;
    if (md?.kind === "map") {
      for (const e of md.entries) if (!OBJECT_META_FIELDS.includes(e.key)) diags.error(e.keyPos, `unknown field "${e.key}" in metadata`);
      if (!entry(md, "name")) diags.error(md.pos, "missing required field \"name\" in metadata");
    } else {
      diags.error(doc.pos, "missing required field \"metadata\"");
    }
    // The CRD's root schema leaves apiVersion, kind and metadata to Kubernetes (checked above).
    validateAgainstSchema(root, crdSchema(crdFile, version), diags, (path) =>
      path.length === 0 ? ["apiVersion", "kind", "metadata"] : undefined,
    );
  }
  return sortDiagnostics(diags.errors).map(formatDiagnostic);
}
