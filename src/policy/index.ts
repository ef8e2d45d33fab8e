// The front end: files -> YAML documents -> checked policies, whatever language each document is written in.

import { type Diagnostics, q } from "./diagnostics.ts";
import type { PolicyAst } from "./ast.ts";
import { checkIstioPolicy, ISTIO_GROUP, ISTIO_KIND, ISTIO_VERSIONS, type IstioOptions } from "./istio.ts";
import { checkOurPolicy, OUR_API_VERSION, OUR_KIND } from "./ours.ts";
import { describe, entry, mapOf, parseYamlFile, stringOf, type YDoc } from "./yaml.ts";

export { Diagnostics, PolicyError, formatDiagnostic, type Diagnostic, type Pos } from "./diagnostics.ts";
export type { PolicyAst, RuleAst } from "./ast.ts";
export type { IstioOptions } from "./istio.ts";
export { selectPolicies, DEFAULT_ROOT_NAMESPACE, type Workload } from "./select.ts";

const ACCEPTED = `${OUR_KIND} (${OUR_API_VERSION}) and ${ISTIO_KIND} (${ISTIO_VERSIONS.map((v) => `${ISTIO_GROUP}/${v}`).join(", ")})`;

/** Checks one document: dispatches on apiVersion and kind. */
export function checkDocument(doc: YDoc, diags: Diagnostics, istio: IstioOptions = {}): PolicyAst | undefined {
  const root = mapOf(doc.root);
  if (!root) {
    diags.error(doc.pos, `a policy document must be a mapping, not ${describe(doc.root)}`);
    return undefined;
  }
  const kindE = entry(root, "kind");
  const apiE = entry(root, "apiVersion");
  const kind = stringOf(kindE?.value);
  const api = stringOf(apiE?.value);
  if (kind === undefined || api === undefined) {
    diags.error(
      root.pos,
      `missing required field ${q(kind === undefined ? "kind" : "apiVersion")} in document; spiffe-authz compiles ${ACCEPTED}`,
    );
    return undefined;
  }
  if (kind === OUR_KIND) {
    if (api !== OUR_API_VERSION) {
      diags.error(apiE!.value.pos, `unsupported apiVersion ${q(api)} for kind ${q(kind)}; use ${q(OUR_API_VERSION)}`);
      return undefined;
    }
    return checkOurPolicy(doc, diags);
  }
  if (kind === ISTIO_KIND) {
    const [group, version] = api.split("/");
    if (group !== ISTIO_GROUP || !ISTIO_VERSIONS.includes(version)) {
      diags.error(
        apiE!.value.pos,
        `unsupported apiVersion ${q(api)} for kind ${q(kind)}; use ${ISTIO_VERSIONS.map((v) => q(`${ISTIO_GROUP}/${v}`)).join(" or ")}`,
      );
      return undefined;
    }
    return checkIstioPolicy(doc, version, diags, istio);
  }
  diags.error(
    kindE!.value.pos,
    `cannot compile a document of kind ${q(kind)} (apiVersion ${q(api)}): spiffe-authz compiles ${ACCEPTED}; pass only the files (or documents) that hold policies`,
  );
  return undefined;
}

/** Parses and checks every document of one file, in order. */
export function checkFile(file: string, text: string, diags: Diagnostics, istio: IstioOptions = {}): PolicyAst[] {
  const out: PolicyAst[] = [];
  for (const doc of parseYamlFile(file, text, diags)) {
    const p = checkDocument(doc, diags, istio);
    if (p) out.push(p);
  }
  return out;
}
