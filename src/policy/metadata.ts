// `metadata` and `selector`, shared by both input languages (Kubernetes ObjectMeta and Istio WorkloadSelector).

import { type Diagnostics, q, type Pos } from "./diagnostics.ts";
import { entry, mapOf, stringOf, type YMap } from "./yaml.ts";

export const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
export const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** ObjectMeta fields a manifest may carry (kubectl output included); anything else under metadata is a typo. */
export const OBJECT_META_FIELDS = [
  "name",
  "namespace",
  "labels",
  "annotations",
  "generateName",
  "uid",
  "resourceVersion",
  "generation",
  "creationTimestamp",
  "deletionTimestamp",
  "deletionGracePeriodSeconds",
  "finalizers",
  "ownerReferences",
  "managedFields",
  "selfLink",
];

export const DRY_RUN_ANNOTATION = "istio.io/dry-run";

export interface Metadata {
  name: string;
  namespace?: string;
  dryRun: boolean;
  /** where the dry-run annotation is, when the policy has one (whatever its value) */
  dryRunPos?: Pos;
}

/** Reads and checks `metadata` (name, namespace, the dry-run annotation). */
export function readMetadata(root: YMap, docPos: Pos, diags: Diagnostics): Metadata {
  const md = mapOf(entry(root, "metadata")?.value);
  const out: Metadata = { name: "", dryRun: false };
  if (!md) {
    // The schema pass reports a metadata of the wrong type; a missing one is reported here.
    if (!entry(root, "metadata")) diags.error(docPos, "missing required field \"metadata\" (with \"name\") in document");
    return out;
  }
  const nameE = entry(md, "name");
  const name = stringOf(nameE?.value);
  if (name === undefined) {
    if (!nameE) diags.error(md.pos, "missing required field \"name\" in metadata");
  } else if (name.length > 253 || !DNS1123_SUBDOMAIN.test(name)) {
    diags.error(
      nameE!.value.pos,
      `invalid name ${q(name)}: use lower-case letters, digits, "-" and "." (a Kubernetes name, at most 253 characters)`,
    );
  } else {
    out.name = name;
  }
  const nsE = entry(md, "namespace");
  const ns = stringOf(nsE?.value);
  if (ns !== undefined) {
    if (ns.length > 63 || !DNS1123_LABEL.test(ns)) {
      diags.error(nsE!.value.pos, `invalid namespace ${q(ns)}: use lower-case letters, digits and "-" (at most 63 characters)`);
    } else {
      out.namespace = ns;
    }
  }
  const ann = mapOf(entry(md, "annotations")?.value);
  const dr = ann ? entry(ann, DRY_RUN_ANNOTATION) : undefined;
  if (dr) {
    out.dryRunPos = dr.keyPos;
    const v = stringOf(dr.value);
    // Istio parses the annotation with strconv.ParseBool; anything but true/false is a mistake worth stopping on.
    if (v === "true" || v === "True" || v === "TRUE" || v === "1" || v === "t" || v === "T") out.dryRun = true;
    else if (!(v === "false" || v === "False" || v === "FALSE" || v === "0" || v === "f" || v === "F")) {
      diags.error(dr.value.pos, `annotation ${q(DRY_RUN_ANNOTATION)} must be "true" or "false", not ${q(v ?? "")}`);
    }
  }
  return out;
}

/**
 * Reads `selector.matchLabels`. Istio rejects empty keys and wildcards (validateWorkloadSelector); for Istio
 * documents the CRD's own CEL rules already report them, so `checkLabels` is false there.
 */
export function readSelector(selector: YMap | undefined, diags: Diagnostics, checkLabels: boolean): Record<string, string> | undefined {
  if (!selector) return undefined;
  const ml = mapOf(entry(selector, "matchLabels")?.value);
  if (!ml) {
    diags.warn(selector.pos, "selector without matchLabels selects every workload of the namespace");
    return {};
  }
  const out: Record<string, string> = {};
  for (const e of ml.entries) {
    const v = stringOf(e.value) ?? "";
    if (!checkLabels) out[e.key] = v;
    else if (e.key === "") diags.error(e.keyPos, "empty label key in selector");
    else if (e.key.includes("*") || v.includes("*")) diags.error(e.keyPos, `wildcards are not supported in selectors: ${q(`${e.key}=${v}`)}`);
    else out[e.key] = v;
  }
  if (ml.entries.length === 0) diags.warn(ml.pos, "workload selector specified without labels selects every workload of the namespace");
  return out;
}
