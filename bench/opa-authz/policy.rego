# The benchmark's rules in Rego, as an OPA-Envoy user would write them: the rules are data
# (data.spiffe_authz.principals, written by bench/opa.ts from the compiled table), keyed by the caller's SPIFFE ID,
# so a decision is one object lookup and a walk over that caller's few rules, whatever the number of rules.
# opa-envoy-plugin's default decision path is envoy/authz/allow.
package envoy.authz

import rego.v1

default allow := false

# Envoy's ext_authz sets source.principal to the client certificate's URI SAN.
principal := input.attributes.source.principal

# The path the rules compare, as the filter's PATH: up to the query string.
request_path := split(input.attributes.request.http.path, "?")[0]

allow if {
	some rule in data.spiffe_authz.principals[principal]
	input.attributes.request.http.method in rule.methods
	path_matches(rule)
}

path_matches(rule) if request_path in rule.exact_paths

path_matches(rule) if {
	some prefix in rule.path_prefixes
	startswith(request_path, prefix)
}
