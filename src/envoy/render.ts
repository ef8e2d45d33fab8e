/**
 * The one renderer of every Envoy config the project uses: the shipped files in `envoy/`, the integration tests,
 * `npm start`, docker compose and the benchmarks.
 *
 * Everything that varies is a parameter: addresses and ports, file paths, the HTTP filters placed before the
 * router, whether the listener requires a client certificate, where the listener comes from (static or a watched
 * LDS file). Concurrency is not part of a config: it is Envoy's `--concurrency` flag (see `run.ts`).
 *
 * The three named variants are presets over the same listener:
 * - `mtls`: requires and validates a client certificate; the wasm filter, then the router;
 * - `optional-client-cert`: validates a client certificate when one is presented, accepts connections without
 *   one, so the filter's own no-identity path is exercised;
 * - `baseline`: `mtls` without the wasm filter (what benchmarks compare against).
 * Any variant may put Envoy's jwt_authn filter before ours (`jwt`), for callers that present a token, and take
 * its certificate and trust bundle from files or over SDS from a SPIRE agent (`tls`, see `SdsTls`).
 */
import { stringify } from "yaml";

/** An Envoy v3 API object, as YAML/JSON. */
export type EnvoyObject = Record<string, unknown>;

export type Variant = "mtls" | "optional-client-cert" | "baseline";
export const variants: readonly Variant[] = ["mtls", "optional-client-cert", "baseline"];

export interface Endpoint {
  /** IP address (default 127.0.0.1). */
  address?: string;
  /** Port; 0 lets the kernel choose (useful for admin together with `--admin-address-path`). */
  port: number;
}

export interface TlsFiles {
  /** PEM certificate chain the listener presents. */
  certChain: string;
  privateKey: string;
  /** PEM CA bundle client certificates are validated against. */
  trustedCa: string;
}

/**
 * The listener's certificate and trust bundle from a SPIFFE Workload API over SDS: the SPIRE agent serves Envoy's
 * SDS on its Workload API socket, attests Envoy like any workload, and pushes a new certificate before the old one
 * expires (no files, no restart).
 */
export interface SdsTls {
  sds: {
    /** The agent's Workload API socket (SPIRE agent `socket_path`; relative paths resolve against Envoy's cwd). */
    socketPath: string;
    /** The SDS secret of the listener's certificate: Envoy's own SPIFFE ID (SPIRE names each X509-SVID by its ID). */
    certificate: string;
    /**
     * The SDS secret of the trust bundle: `spiffe://<trust domain>` for that trust domain's bundle alone, `ALL`
     * (SPIRE's `default_all_bundles_name`) for it and every federated trust domain's. Either way SPIRE 1.13 answers
     * Envoy >= 1.18 with Envoy's SPIFFE certificate validator, which checks a client certificate against the bundle
     * of the trust domain in its SPIFFE ID.
     */
    validation: string;
  };
}

/** Where a listener's certificate and trust bundle come from: files, or SDS from a SPIRE agent. */
export type TlsSource = TlsFiles | SdsTls;

/** The name of the cluster Envoy reaches the SPIRE agent's SDS over. */
export const sdsClusterName = "spire_agent";

/** An SDS config source on `sdsClusterName`. */
function sdsConfig(): EnvoyObject {
  return {
    resource_api_version: "V3",
    // 0s: a listener waits for its certificate and bundle however long the agent takes (the first SVID of a new
    // registration entry takes seconds), and Envoy reports ready (admin /ready LIVE) only once it has them. The
    // default (15 s) would open the listener without a certificate, failing every handshake.
    initial_fetch_timeout: "0s",
    api_config_source: {
      api_type: "GRPC",
      transport_api_version: "V3",
      grpc_services: [{ envoy_grpc: { cluster_name: sdsClusterName } }],
    },
  };
}

/** The cluster for the SPIRE agent's SDS: HTTP/2 (gRPC) over its Unix socket. */
export function sdsCluster(socketPath: string): EnvoyObject {
  return {
    name: sdsClusterName,
    type: "STATIC",
    connect_timeout: "1s",
    typed_extension_protocol_options: {
      "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        explicit_http_config: { http2_protocol_options: {} },
      },
    },
    load_assignment: {
      cluster_name: sdsClusterName,
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { pipe: { path: socketPath } } } }] }],
    },
  };
}

function isSds(tls: TlsSource): tls is SdsTls {
  return "sds" in tls;
}

/** The certificate and validation part of a listener's `common_tls_context`. */
function tlsContextSources(tls: TlsSource): EnvoyObject {
  if (isSds(tls)) {
    return {
      tls_certificate_sds_secret_configs: [{ name: tls.sds.certificate, sds_config: sdsConfig() }],
      // Any certificate of a trusted trust domain is accepted at the TLS layer; which SPIFFE IDs may do what is
      // the filter's decision, not a SAN matcher's here.
      validation_context_sds_secret_config: { name: tls.sds.validation, sds_config: sdsConfig() },
    };
  }
  return {
    tls_certificates: [{ certificate_chain: { filename: tls.certChain }, private_key: { filename: tls.privateKey } }],
    // Any certificate chaining to this CA is accepted at the TLS layer; which SPIFFE IDs may do what is the
    // filter's decision, not a SAN matcher's here.
    validation_context: { trusted_ca: { filename: tls.trustedCa } },
  };
}

/** The root id the AssemblyScript filter registers (`assembly/filter/`), also the Istio `pluginName`. */
export const rootId = "spiffe_authz";

export interface WasmFilterOptions {
  /** `vm_config.code.local.filename`: path of `build/release.wasm` (relative paths resolve against Envoy's cwd). */
  wasmPath: string;
  /** The plugin configuration string: the compiled table (`compileFiles(...).config`). */
  configuration: string;
  /** Plugin name (default `spiffe_authz`). */
  name?: string;
  /**
   * `vm_config.vm_id` (default `spiffe_authz`). Envoy shares one VM among plugins whose vm_id, code and VM
   * configuration are equal; each plugin still gets its own root context and `onConfigure`.
   */
  vmId?: string;
  /**
   * `allow_on_headers_stop_iteration` (Envoy >= 1.35, `PluginConfig` field, a BoolValue; default true here).
   * Without it Envoy turns the filter's StopIteration in onRequestHeaders into StopAllIterationAndWatermark, so a
   * filter waiting for the body to decide (rules whose conditions read `request.json` or `request.grpc.message`)
   * would also stop body callbacks; with it the headers stay in Envoy, the body reaches the filter, and the
   * upstream sees nothing before the decision. Policies that never read the body return Continue and are not
   * affected. `false` writes the field as false (Envoy's default behaviour).
   */
  allowOnHeadersStopIteration?: boolean;
}

/** The `envoy.extensions.filters.http.wasm.v3.Wasm` message running our filter (fail closed). */
export function wasmFilterConfig(options: WasmFilterOptions): EnvoyObject {
  const config: EnvoyObject = {
    name: options.name ?? rootId,
    root_id: rootId,
    vm_config: {
      vm_id: options.vmId ?? rootId,
      runtime: "envoy.wasm.runtime.v8",
      code: { local: { filename: options.wasmPath } },
    },
    configuration: {
      "@type": "type.googleapis.com/google.protobuf.StringValue",
      value: options.configuration,
    },
    // If the VM cannot be created or crashes, requests get a 503 instead of passing unauthorized. (false is the
    // default; it is spelled out because an authorization filter must never be mistaken for a fail-open one.)
    fail_open: false,
    // Spelled out in every config we render: Envoy 1.40 defaults it to false (see WasmFilterOptions).
    allow_on_headers_stop_iteration: options.allowOnHeadersStopIteration ?? true,
  };
  return { "@type": wasmTypeUrl, config };
}

export const wasmTypeUrl = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
export const rbacTypeUrl = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
export const typedExtensionConfigTypeUrl = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";

/** The `envoy.filters.http.wasm` entry running our filter (fail closed), its configuration inline. */
export function wasmFilter(options: WasmFilterOptions): EnvoyObject {
  return { name: "envoy.filters.http.wasm", typed_config: wasmFilterConfig(options) };
}

/**
 * Where Envoy's extension config discovery (ECDS) reads the filter's configuration: a watched file holding a
 * DiscoveryResponse of `TypedExtensionConfig`s. Envoy reloads it when a file is moved into `directory`, so writers
 * replace it atomically (`writeWatchedFile` in run.ts does: a temporary file in the same directory, then a rename).
 */
export interface EcdsSource {
  /** The file (relative paths resolve against Envoy's working directory). */
  path: string;
  /** Its directory, watched for the rename. */
  directory: string;
}

/** The name of the filter and of its extension config (one name ties the listener's filter to the resource). */
export const ecdsFilterName = "spiffe-authz";

/**
 * An HTTP filter whose configuration comes from ECDS, in the shape istiod gives a WasmPlugin: `config_discovery`
 * accepting the Wasm filter or an RBAC filter under the same name (istio-agent substitutes a deny-all RBAC filter
 * when the module of a FAIL_CLOSE plugin cannot be fetched), and `initial_fetch_timeout: 0s`, so the listener does
 * not serve before the filter's first configuration has arrived. A new configuration replaces the filter in place:
 * the listener is not rebuilt or drained, so the very next request on an already open connection (HTTP/1.1
 * keep-alive or an HTTP/2 session) runs the new filter.
 */
export function ecdsFilter(source: EcdsSource, name = ecdsFilterName): EnvoyObject {
  return {
    name,
    config_discovery: {
      config_source: {
        resource_api_version: "V3",
        initial_fetch_timeout: "0s",
        path_config_source: { path: source.path, watched_directory: { path: source.directory } },
      },
      type_urls: [wasmTypeUrl, rbacTypeUrl],
    },
  };
}

/** A `TypedExtensionConfig` carrying our wasm filter (what ECDS serves, and what istiod serves for a WasmPlugin). */
export function wasmExtensionConfig(options: WasmFilterOptions, name = ecdsFilterName): EnvoyObject {
  return { name, typed_config: wasmFilterConfig(options) };
}

/**
 * A `TypedExtensionConfig` with an RBAC filter that denies every request (an ALLOW policy set with no policies):
 * what istio-agent serves, under the plugin's name, in place of a FAIL_CLOSE plugin whose module it could not
 * fetch. Envoy answers 403 `RBAC: access denied` (details `rbac_access_denied_matched_policy[none]`).
 */
export function denyAllExtensionConfig(name = ecdsFilterName): EnvoyObject {
  return { name, typed_config: { "@type": rbacTypeUrl, rules: { action: "ALLOW" } } };
}

/** The content of an ECDS file: a DiscoveryResponse holding extension configs. */
export function renderEcdsResponse(configs: EnvoyObject[], versionInfo: string): EnvoyObject {
  return {
    version_info: versionInfo,
    resources: configs.map((c) => ({ "@type": typedExtensionConfigTypeUrl, ...c })),
  };
}

/**
 * Where Envoy's jwt_authn filter leaves a verified token's payload and where our filter reads `jwt.claims` from:
 * dynamic metadata (namespace = the filter's name, key = the provider's `payload_in_metadata`). Dynamic metadata is
 * written by filters only; a client cannot set it with a header.
 */
export const jwtPayloadMetadata = { namespace: "envoy.filters.http.jwt_authn", key: "jwt_payload" } as const;

/** Where a provider's signing keys come from. Both are a real JWKS document (RFC 7517 `{"keys": [...]}`). */
export type JwksSource =
  /** `local_jwks.inline_string`: the JWKS text itself. */
  | { inline: string }
  /**
   * `remote_jwks`: fetched by Envoy over `cluster` (which must exist, e.g. `staticCluster(...)` in
   * `extraClusters`). The listener starts only after the first fetch has finished (`async_fetch` with
   * `fast_listener: false`), so no request races the key download.
   */
  | { remote: { uri: string; cluster: string; timeout?: string; cacheDuration?: string } };

export interface JwtAuthnOptions {
  /** Provider name (default `spiffe_authz_jwt`). */
  provider?: string;
  /** The `iss` a token must carry. */
  issuer: string;
  /** `aud` values a token must carry one of; empty or omitted: the audience is not checked. */
  audiences?: string[];
  jwks: JwksSource;
  /** `payload_in_metadata` key (default `jwt_payload`, what the filter reads; see `jwtPayloadMetadata`). */
  payloadInMetadata?: string;
}

/**
 * An `envoy.filters.http.jwt_authn` entry, placed before our wasm filter: it verifies a bearer token
 * (`Authorization: Bearer ...`) against the provider and writes the payload to dynamic metadata.
 *
 * - `requires_any: [provider, allow_missing]`: a request without a token passes on with no claims (our filter then
 *   decides on the mTLS peer alone); a request with a token that fails verification (bad signature, issuer,
 *   audience, expiry) is answered 401 by jwt_authn and goes no further.
 * - `forward: false`: the token is removed before the request goes upstream.
 * - no `forward_payload_header`: the payload never travels as a header, so a client-sent header of any name is
 *   just a header; only the metadata counts.
 */
export function jwtAuthnFilter(options: JwtAuthnOptions): EnvoyObject {
  const providerName = options.provider ?? "spiffe_authz_jwt";
  const provider: EnvoyObject = {
    issuer: options.issuer,
    forward: false,
    payload_in_metadata: options.payloadInMetadata ?? jwtPayloadMetadata.key,
  };
  if (options.audiences !== undefined && options.audiences.length > 0) provider.audiences = options.audiences;
  if ("inline" in options.jwks) {
    provider.local_jwks = { inline_string: options.jwks.inline };
  } else {
    const remote = options.jwks.remote;
    provider.remote_jwks = {
      http_uri: { uri: remote.uri, cluster: remote.cluster, timeout: remote.timeout ?? "5s" },
      cache_duration: remote.cacheDuration ?? "300s",
      async_fetch: { fast_listener: false },
    };
  }
  return {
    name: jwtPayloadMetadata.namespace,
    typed_config: {
      "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
      providers: { [providerName]: provider },
      rules: [
        {
          match: { prefix: "/" },
          requires: { requires_any: { requirements: [{ provider_name: providerName }, { allow_missing: {} }] } },
        },
      ],
    },
  };
}

export const routerFilter: EnvoyObject = {
  name: "envoy.filters.http.router",
  typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" },
};

/** Cluster names the routes point at. */
export const clusterNames = { http: "upstream_http", grpc: "upstream_grpc" } as const;

/**
 * The access log line: who (the peer's URI SAN) did what (method, path, protocol) when (start time), and what
 * happened (status, response code details, gRPC status, duration, upstream host or `-` when the request never
 * left Envoy). One line per request on Envoy's stdout; Envoy's own log goes to stderr.
 */
/** The filter's decision record field `f` (filter/record.ts), read by Envoy's CEL formatter. */
const authz = (f: string): string => `%CEL(filter_state['wasm.spiffe_authz'].${f})%`;

/**
 * The access log the shipped configs write: one JSON object per request, Envoy's usual fields and the filter's
 * decision record (docs/design.md "Decision record"). A field Envoy has no value for is null (the record is absent
 * when the filter did not decide: a request jwt_authn or TLS refused, or an allow the policy's sampling left out).
 */
export const accessLogJsonFormat: Record<string, string> = {
  start_time: "%START_TIME(%Y-%m-%dT%H:%M:%S.%3fZ)%",
  method: "%REQ(:METHOD)%",
  path: "%REQ(:PATH)%",
  authority: "%REQ(:AUTHORITY)%",
  protocol: "%PROTOCOL%",
  response_code: "%RESPONSE_CODE%",
  response_code_details: "%RESPONSE_CODE_DETAILS%",
  grpc_status: "%GRPC_STATUS_NUMBER%",
  duration_ms: "%DURATION%",
  request_id: "%REQ(X-REQUEST-ID)%",
  upstream_host: "%UPSTREAM_HOST%",
  peer: "%DOWNSTREAM_PEER_URI_SAN%",
  authz_decision: authz("decision"),
  authz_reason: authz("reason"),
  authz_rule: authz("rule"),
  authz_peer: authz("peer"),
  authz_trust_domain: authz("trust_domain"),
  authz_table: authz("table"),
  authz_audit: authz("audit"),
  authz_dry_run: authz("dry_run"),
};

/**
 * The labels of an Istio access-log provider (meshConfig `extensionProviders[].envoyFileAccessLog.logFormat.labels`)
 * that print the decision record beside Istio's usual fields (docs/observability.md). Istio does not add Envoy's CEL
 * formatter extension, so the record's fields are read with %FILTER_STATE(...:FIELD:...)% and the whole record with
 * `:TYPED`.
 */
export const istioAccessLogLabels: Record<string, string> = {
  start_time: "%START_TIME%",
  method: "%REQ(:METHOD)%",
  path: "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
  protocol: "%PROTOCOL%",
  response_code: "%RESPONSE_CODE%",
  response_flags: "%RESPONSE_FLAGS%",
  response_code_details: "%RESPONSE_CODE_DETAILS%",
  duration: "%DURATION%",
  request_id: "%REQ(X-REQUEST-ID)%",
  authority: "%REQ(:AUTHORITY)%",
  upstream_host: "%UPSTREAM_HOST%",
  authz_decision: "%CEL(filter_state['wasm.spiffe_authz'].decision)%",
  authz_reason: "%CEL(filter_state['wasm.spiffe_authz'].reason)%",
  authz_record: "%FILTER_STATE(wasm.spiffe_authz:TYPED)%",
};

/** Envoy's CEL formatter, which `accessLogJsonFormat` needs (an extension of the official Envoy build). */
export const celFormatter: EnvoyObject = {
  name: "envoy.formatter.cel",
  typed_config: { "@type": "type.googleapis.com/envoy.extensions.formatter.cel.v3.Cel" },
};

/** The text format of earlier releases, still read by parseAccessLogLine (e.g. as a `diff` corpus). */
export const accessLogFormat =
  '[%START_TIME(%Y-%m-%dT%H:%M:%S.%3fZ)%] %DOWNSTREAM_PEER_URI_SAN% "%REQ(:METHOD)% %REQ(:PATH)% %PROTOCOL%" ' +
  "%RESPONSE_CODE% %RESPONSE_CODE_DETAILS% grpc=%GRPC_STATUS_NUMBER% %DURATION%ms upstream=%UPSTREAM_HOST%\n";

/** The filter's decision record as an access log line carries it. */
export interface AuthzRecord {
  decision: string | null;
  reason: string | null;
  rule: string | null;
  peer: string | null;
  trustDomain: string | null;
  table: string | null;
  audit: string | null;
  dryRun: string | null;
}

export interface AccessLogEntry {
  start: string;
  /** The peer's URI SANs as Envoy prints them (comma-separated), or null without a client certificate or URI SAN. */
  peer: string | null;
  method: string;
  path: string;
  protocol: string;
  status: number;
  details: string;
  grpcStatus: number | null;
  durationMs: number;
  /** `ip:port` of the upstream host, null when the request never reached an upstream. */
  upstream: string | null;
  /** JSON lines only: the authority, the request id, and the filter's decision record (null when it left none). */
  authority?: string | null;
  requestId?: string | null;
  authz?: AuthzRecord | null;
}

const accessLogPattern =
  /^\[(\S+)\] (\S+) "(\S+) (\S+) (\S+)" (\d+) (\S+) grpc=(\S+) (\d+)ms upstream=(\S+)$/;

/** Parses one line written with `accessLogJsonFormat` (or the older `accessLogFormat`); null for any other line. */
export function parseAccessLogLine(line: string): AccessLogEntry | null {
  const text = line.trim();
  if (text.startsWith("{")) return parseJsonLine(text);
  const m = accessLogPattern.exec(text);
  if (m === null) return null;
  const dash = (s: string): string | null => (s === "-" ? null : s);
  return {
    start: m[1],
    peer: dash(m[2]),
    method: m[3],
    path: m[4],
    protocol: m[5],
    status: Number(m[6]),
    details: m[7],
    grpcStatus: m[8] === "-" ? null : Number(m[8]),
    durationMs: Number(m[9]),
    upstream: dash(m[10]),
  };
}

function parseJsonLine(text: string): AccessLogEntry | null {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return null;
  }
  if (typeof o !== "object" || o === null || typeof o.method !== "string" || !("response_code_details" in o)) return null;
  const str = (k: string): string | null => (typeof o[k] === "string" && o[k] !== "-" ? (o[k] as string) : null);
  const num = (k: string): number | null => (typeof o[k] === "number" ? (o[k] as number) : typeof o[k] === "string" && /^\d+$/.test(o[k] as string) ? Number(o[k]) : null);
  const record: AuthzRecord = {
    decision: str("authz_decision"), reason: str("authz_reason"), rule: str("authz_rule"), peer: str("authz_peer"),
    trustDomain: str("authz_trust_domain"), table: str("authz_table"), audit: str("authz_audit"), dryRun: str("authz_dry_run"),
  };
  return {
    start: str("start_time") ?? "",
    peer: str("peer"),
    method: str("method") ?? "",
    path: str("path") ?? "",
    protocol: str("protocol") ?? "",
    status: num("response_code") ?? 0,
    details: str("response_code_details") ?? "",
    grpcStatus: num("grpc_status"),
    durationMs: num("duration_ms") ?? 0,
    upstream: str("upstream_host"),
    authority: str("authority"),
    requestId: str("request_id"),
    authz: record.decision === null ? null : record,
  };
}

export interface ListenerOptions {
  /** Listener name (default `ingress`); LDS updates replace the listener of the same name. */
  name?: string;
  endpoint: Endpoint;
  tls: TlsSource;
  /** false: connections without a client certificate are accepted (one that is presented is still validated). */
  requireClientCertificate: boolean;
  /** HTTP filters before the router, in order (e.g. `[wasmFilter(...)]`; JWT configs put jwt_authn first). */
  httpFilters: EnvoyObject[];
  /**
   * Write the access log to stdout (default true): the shipped JSON format with Envoy's CEL formatter.
   * `{istioFile}`: the file access log istiod writes for a meshConfig `envoyFileAccessLog` provider with
   * `istioAccessLogLabels` (json_format, unsorted, no formatter extension), to that file. Benchmarks may turn it off.
   */
  accessLog?: boolean | { istioFile: string };
  /**
   * HCM `path_with_escaped_slashes_action` (default UNESCAPE_AND_REDIRECT). Tests set KEEP_UNCHANGED, Istio's
   * default, to show that the filter refuses escaped slashes on its own.
   */
  escapedSlashes?: "UNESCAPE_AND_REDIRECT" | "UNESCAPE_AND_FORWARD" | "REJECT_REQUEST" | "KEEP_UNCHANGED";
  /** HCM `forward_client_cert_details` (default SANITIZE_SET, with the URI SANs of the client certificate). */
  forwardClientCert?: "SANITIZE_SET" | "APPEND_FORWARD" | "SANITIZE";
}

function socketAddress(endpoint: Endpoint): EnvoyObject {
  return { socket_address: { address: endpoint.address ?? "127.0.0.1", port_value: endpoint.port } };
}

/** An `envoy.config.listener.v3.Listener`: HTTPS (h2 and http/1.1), client certificates, filters, router. */
export function renderListener(options: ListenerOptions): EnvoyObject {
  const hcm: EnvoyObject = {
    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
    stat_prefix: "ingress_http",
    codec_type: "AUTO",
    // Authorization by path is only as good as the path it sees: resolve `.`/`..` (RFC 3986) and `//` before
    // any filter runs, as Istio's MERGE_SLASHES normalization does, so `/admin/../orders` cannot dodge a rule.
    normalize_path: true,
    merge_slashes: true,
    // normalize_path leaves %2F and %5C alone, and a workload that decodes them (Python's http.server, many
    // routers) reads `/public/..%2Fadmin` as `/admin`: redirect the client to the unescaped, normalized path
    // instead (the filter also refuses such paths on its own: docs/security.md).
    path_with_escaped_slashes_action: options.escapedSlashes ?? "UNESCAPE_AND_REDIRECT",
    // Replace any client-sent x-forwarded-client-cert with this connection's element, whose URI SANs the filter
    // counts (an X.509-SVID has exactly one) and the upstream can read.
    forward_client_cert_details: options.forwardClientCert ?? "SANITIZE_SET",
    set_current_client_cert_details: { uri: true },
    route_config: {
      name: "local_route",
      virtual_hosts: [
        {
          name: "upstream",
          domains: ["*"],
          routes: [
            {
              // gRPC needs an HTTP/2 upstream; plain requests keep HTTP/1.1.
              match: {
                prefix: "/",
                headers: [{ name: "content-type", string_match: { prefix: "application/grpc" } }],
              },
              route: { cluster: clusterNames.grpc },
            },
            { match: { prefix: "/" }, route: { cluster: clusterNames.http } },
          ],
        },
      ],
    },
    http_filters: [...options.httpFilters, routerFilter],
  };
  if (typeof options.accessLog === "object") {
    // What istiod's telemetry_logging.go writes for an envoyFileAccessLog provider with `logFormat.labels`: a file
    // logger, the labels as json_format, properties unsorted, and formatters only for %REQ_WITHOUT_QUERY%.
    hcm.access_log = [
      {
        name: "envoy.access_loggers.file",
        typed_config: {
          "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
          path: options.accessLog.istioFile,
          log_format: { json_format: istioAccessLogLabels, json_format_options: { sort_properties: false } },
        },
      },
    ];
  } else if (options.accessLog ?? true) {
    hcm.access_log = [
      {
        name: "envoy.access_loggers.stdout",
        typed_config: {
          "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
          log_format: { json_format: accessLogJsonFormat, formatters: [celFormatter] },
        },
      },
    ];
  }
  return {
    name: options.name ?? "ingress",
    address: socketAddress(options.endpoint),
    filter_chains: [
      {
        transport_socket: {
          name: "envoy.transport_sockets.tls",
          typed_config: {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            require_client_certificate: options.requireClientCertificate,
            common_tls_context: {
              // h2 first: gRPC clients need it; curl and node's https fall back to http/1.1.
              alpn_protocols: ["h2", "http/1.1"],
              tls_params: { tls_minimum_protocol_version: "TLSv1_2" },
              ...tlsContextSources(options.tls),
            },
          },
        },
        filters: [{ name: "envoy.filters.network.http_connection_manager", typed_config: hcm }],
      },
    ],
  };
}

export interface UpstreamEndpoints {
  /** Plain HTTP/1.1 upstream. */
  http: Endpoint;
  /** Cleartext HTTP/2 (h2c) upstream for gRPC (default: the http endpoint). */
  grpc?: Endpoint;
}

function cluster(name: string, endpoint: Endpoint, http2: boolean): EnvoyObject {
  const c: EnvoyObject = {
    name,
    type: "STATIC",
    connect_timeout: "1s",
    load_assignment: {
      cluster_name: name,
      endpoints: [{ lb_endpoints: [{ endpoint: { address: socketAddress(endpoint) } }] }],
    },
  };
  if (http2) {
    c.typed_extension_protocol_options = {
      "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        explicit_http_config: { http2_protocol_options: {} },
      },
    };
  }
  return c;
}

export interface BootstrapOptions {
  /** Admin endpoint, always on a loopback address (default 127.0.0.1). */
  admin: Endpoint;
  upstream: UpstreamEndpoints;
  /** `node.id` (default `spiffe-authz`). */
  nodeId?: string;
  /** More clusters, e.g. an ext_authz server or a JWKS endpoint that a filter in `httpFilters` names. */
  extraClusters?: EnvoyObject[];
}

/**
 * Envoy's stats tag extraction for the filter's metrics (assembly/filter/metrics.ts): the dotted label segments of
 * `wasmcustom.spiffe_authz.decision.<d>.reason.<r>.requests` and `wasmcustom.spiffe_authz.rule.<id>.decision.<d>.
 * rule_requests` become tags, so `/stats/prometheus` shows `envoy_wasmcustom_spiffe_authz_requests{decision="deny",
 * reason="deny_rule"}` and `envoy_wasmcustom_spiffe_authz_rule_requests{rule="...",decision="allow"}`. Each regex
 * matches the whole original name; its first group is removed from the name, its second is the value.
 */
export const statsTags: EnvoyObject[] = [
  { tag_name: "decision", regex: "^wasmcustom\\.spiffe_authz\\.(decision\\.(allow|deny)\\.)reason\\.\\w+\\.requests$" },
  { tag_name: "reason", regex: "^wasmcustom\\.spiffe_authz\\.decision\\.\\w+\\.(reason\\.(\\w+)\\.)requests$" },
  { tag_name: "rule", regex: "^wasmcustom\\.spiffe_authz\\.(rule\\.(.+)\\.)decision\\.\\w+\\.rule_requests$" },
  { tag_name: "decision", regex: "^wasmcustom\\.spiffe_authz\\.rule\\..+\\.(decision\\.(allow|deny)\\.)rule_requests$" },
];

function bootstrapBase(options: BootstrapOptions): EnvoyObject {
  const adminAddress = options.admin.address ?? "127.0.0.1";
  if (!/^127\.|^::1$/.test(adminAddress)) throw new Error(`admin address "${adminAddress}" is not a loopback address`);
  return {
    node: { id: options.nodeId ?? "spiffe-authz", cluster: "spiffe-authz" },
    admin: { address: socketAddress({ address: adminAddress, port: options.admin.port }) },
    stats_config: { stats_tags: statsTags },
    // Without a global connection limit Envoy 1.40 logs a warning at start; the limit is far above any test or
    // benchmark here.
    overload_manager: {
      resource_monitors: [
        {
          name: "envoy.resource_monitors.global_downstream_max_connections",
          typed_config: {
            "@type":
              "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
            max_active_downstream_connections: 50000,
          },
        },
      ],
    },
  };
}

function clusters(options: BootstrapOptions): EnvoyObject[] {
  const { upstream } = options;
  return [
    cluster(clusterNames.http, upstream.http, false),
    cluster(clusterNames.grpc, upstream.grpc ?? upstream.http, true),
    ...(options.extraClusters ?? []),
  ];
}

/** A STATIC cluster of one endpoint (HTTP/1.1, or HTTP/2 for gRPC services such as ext_authz). */
export function staticCluster(name: string, endpoint: Endpoint, http2 = false): EnvoyObject {
  return cluster(name, endpoint, http2);
}

/** A bootstrap with a static listener (and the SPIRE agent's cluster when the listener's TLS comes over SDS). */
export function renderStaticBootstrap(options: BootstrapOptions & { listener: ListenerOptions }): EnvoyObject {
  const tls = options.listener.tls;
  const sds = isSds(tls) ? [sdsCluster(tls.sds.socketPath)] : [];
  return {
    ...bootstrapBase(options),
    static_resources: { listeners: [renderListener(options.listener)], clusters: [...clusters(options), ...sds] },
  };
}

/**
 * A bootstrap whose listeners come from the file `ldsPath`, watched through its directory: Envoy reloads the file
 * when a file is moved into the directory, so writers must write a temporary file there and rename it over
 * `ldsPath` (see `writeLdsFile` in `run.ts`). Clusters stay static.
 */
export function renderLdsBootstrap(options: BootstrapOptions & { ldsPath: string; ldsDirectory: string }): EnvoyObject {
  return {
    ...bootstrapBase(options),
    dynamic_resources: {
      lds_config: {
        resource_api_version: "V3",
        path_config_source: { path: options.ldsPath, watched_directory: { path: options.ldsDirectory } },
      },
    },
    static_resources: { clusters: clusters(options) },
  };
}

/** The content of an LDS file: a DiscoveryResponse holding the listeners. */
export function renderLdsResponse(listeners: EnvoyObject[], versionInfo: string): EnvoyObject {
  return {
    version_info: versionInfo,
    resources: listeners.map((l) => ({ "@type": "type.googleapis.com/envoy.config.listener.v3.Listener", ...l })),
  };
}

export interface VariantOptions extends BootstrapOptions {
  variant: Variant;
  listener: Endpoint;
  tls: TlsSource;
  /** Needed by every variant but `baseline` (unless `ecds` delivers the filter). */
  wasm?: WasmFilterOptions;
  /**
   * Deliver the filter through ECDS from this file instead of inline: the listener names the filter and the file
   * holds its configuration (`renderEcdsResponse([wasmExtensionConfig(...)])`), replaced in place on an update.
   */
  ecds?: EcdsSource;
  /** Adds jwt_authn before the wasm filter (JWT identity for callers outside the mesh). */
  jwt?: JwtAuthnOptions;
  accessLog?: ListenerOptions["accessLog"];
  escapedSlashes?: ListenerOptions["escapedSlashes"];
  forwardClientCert?: ListenerOptions["forwardClientCert"];
}

/** The listener options of a named variant. */
export function variantListener(options: Omit<VariantOptions, keyof BootstrapOptions>): ListenerOptions {
  const needsWasm = options.variant !== "baseline";
  if (needsWasm && options.wasm === undefined && options.ecds === undefined) {
    throw new Error(`variant "${options.variant}" needs the wasm options or an ECDS source`);
  }
  const authz = !needsWasm ? [] : options.ecds !== undefined ? [ecdsFilter(options.ecds)] : [wasmFilter(options.wasm!)];
  return {
    endpoint: options.listener,
    tls: options.tls,
    requireClientCertificate: options.variant !== "optional-client-cert",
    // jwt_authn must run first: it writes the verified payload our filter reads.
    httpFilters: [
      ...(options.jwt !== undefined ? [jwtAuthnFilter(options.jwt)] : []),
      ...authz,
    ],
    accessLog: options.accessLog,
    escapedSlashes: options.escapedSlashes,
    forwardClientCert: options.forwardClientCert,
  };
}

/** A static bootstrap of a named variant. */
export function renderVariant(options: VariantOptions): EnvoyObject {
  return renderStaticBootstrap({ ...options, listener: variantListener(options) });
}

/**
 * YAML text of a config. Long strings (the table) stay on one line; `header` lines become `#` comments.
 */
export function toYaml(config: EnvoyObject, header: string[] = []): string {
  const body = stringify(config, { lineWidth: 0, minContentWidth: 0, aliasDuplicateObjects: false });
  return header.map((l) => (l === "" ? "#\n" : `# ${l}\n`)).join("") + body;
}
