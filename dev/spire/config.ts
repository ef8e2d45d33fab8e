/**
 * SPIRE server and agent configuration files (HCL), for a server and agent on one machine: the server with the
 * embedded SQLite datastore, the disk key manager and join-token node attestation; the agent with join-token node
 * attestation and the unix workload attestor (selectors `unix:uid:<n>`, `unix:gid:<n>`, ...), serving the Workload
 * API and Envoy's SDS on one Unix socket.
 */

/** An HCL string literal (HCL's escapes are JSON's for the characters that can occur here). */
function str(value: string): string {
  return JSON.stringify(value);
}

export interface ServerConfigOptions {
  trustDomain: string;
  /** TCP port of the server API the agents talk to (on 127.0.0.1). */
  port: number;
  /** The server API's Unix socket (the `spire-server` admin commands use it). */
  socketPath: string;
  /** Where the server keeps its SQLite datastore, keys and CA journal. */
  dataDir: string;
  logLevel?: string;
  /** Default lifetime of X509-SVIDs (SPIRE's default is 1h); an entry's `x509SVIDTTL` overrides it. */
  defaultX509SvidTtl?: string;
  /** Lifetime of the server's CA (default 24h). */
  caTtl?: string;
  /**
   * The federation bundle endpoint, profile https_spiffe: other servers fetch this trust domain's bundle from
   * `https://127.0.0.1:<port>`, authenticating the server by its SVID `spiffe://<trust domain>/spire/server`.
   */
  bundleEndpointPort?: number;
  /**
   * How often the server reloads registration entries into the cache it answers agents from (SPIRE's default
   * 5s). Together with the agent's sync interval it bounds how long a new entry takes to reach a workload.
   */
  cacheReloadInterval?: string;
}

export function renderServerConfig(o: ServerConfigOptions): string {
  const federation =
    o.bundleEndpointPort === undefined
      ? ""
      : `
    federation {
        bundle_endpoint {
            address = "127.0.0.1"
            port = ${o.bundleEndpointPort}
            refresh_hint = "1m"
            profile "https_spiffe" {}
        }
    }`;
  return `server {
    bind_address = "127.0.0.1"
    bind_port = "${o.port}"
    socket_path = ${str(o.socketPath)}
    trust_domain = ${str(o.trustDomain)}
    data_dir = ${str(o.dataDir)}
    log_level = ${str(o.logLevel ?? "INFO")}
    default_x509_svid_ttl = ${str(o.defaultX509SvidTtl ?? "1h")}
    ca_ttl = ${str(o.caTtl ?? "24h")}
    ca_subject {
        country = ["US"]
        organization = ["spiffe-authz"]
        common_name = ${str(o.trustDomain)}
    }${federation}
    experimental {
        cache_reload_interval = ${str(o.cacheReloadInterval ?? "1s")}
    }
}

plugins {
    DataStore "sql" {
        plugin_data {
            database_type = "sqlite3"
            connection_string = ${str(`${o.dataDir}/datastore.sqlite3`)}
        }
    }
    KeyManager "disk" {
        plugin_data {
            keys_path = ${str(`${o.dataDir}/keys.json`)}
        }
    }
    NodeAttestor "join_token" {
        plugin_data {}
    }
}
`;
}

export interface AgentConfigOptions {
  trustDomain: string;
  /** The server API's TCP port on 127.0.0.1. */
  serverPort: number;
  /** The Workload API socket, which also serves Envoy's SDS. */
  socketPath: string;
  dataDir: string;
  /** The server's CA bundle (PEM) the agent verifies the server with on its first connection. */
  trustBundlePath: string;
  logLevel?: string;
  /**
   * How often the agent syncs entries and SVIDs with the server (SPIRE's default 5s). It is also how often the
   * agent checks whether an SVID is due for rotation (at about half its lifetime).
   */
  syncInterval?: string;
}

export function renderAgentConfig(o: AgentConfigOptions): string {
  return `agent {
    data_dir = ${str(o.dataDir)}
    log_level = ${str(o.logLevel ?? "INFO")}
    server_address = "127.0.0.1"
    server_port = "${o.serverPort}"
    socket_path = ${str(o.socketPath)}
    trust_bundle_path = ${str(o.trustBundlePath)}
    trust_domain = ${str(o.trustDomain)}
    experimental {
        sync_interval = ${str(o.syncInterval ?? "1s")}
    }
}

plugins {
    NodeAttestor "join_token" {
        plugin_data {}
    }
    KeyManager "disk" {
        plugin_data {
            directory = ${str(o.dataDir)}
        }
    }
    WorkloadAttestor "unix" {
        plugin_data {}
    }
}
`;
}
