// istio-oracle translates Istio AuthorizationPolicies into Envoy RBAC HTTP filters with istiod's own code
// (istio.io/istio pilot/pkg/security/authz/builder), the way that package's tests build them, and validates
// them with istiod's webhook validation (pkg/config/validation). It is the reference the compiler's Istio input
// and `--emit rbac` are checked against (tests/istio-oracle/).
//
// Input: JSON lines on stdin, one case each:
//
//	{"id":"c1","yaml":"<AuthorizationPolicy documents>","trustDomain":"cluster.local","aliases":["td2"],"namespace":"foo"}
//
// Output: one JSON line per case: {"id":"c1","errors":["..."],"filters":[<HttpFilter as proto JSON>...]}.
// "errors" holds istiod's validation errors (a policy istiod rejects is never translated); "filters" is what
// istiod sends a sidecar in namespace "namespace" (default "foo") with no labels.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"

	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/path/match/uri_template/v3"

	meshconfig "istio.io/api/mesh/v1alpha1"
	"istio.io/istio/pilot/pkg/config/kube/crd"
	"istio.io/istio/pilot/pkg/config/memory"
	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pilot/pkg/security/authz/builder"
	"istio.io/istio/pilot/pkg/security/trustdomain"
	"istio.io/istio/pkg/config/schema/collections"
	"istio.io/istio/pkg/config/validation"
)

type input struct {
	ID          string   `json:"id"`
	YAML        string   `json:"yaml"`
	TrustDomain string   `json:"trustDomain"`
	Aliases     []string `json:"aliases"`
	Namespace   string   `json:"namespace"`
}

type output struct {
	ID      string            `json:"id"`
	Errors  []string          `json:"errors"`
	Filters []json.RawMessage `json:"filters"`
}

func run(in input) (out output) {
	out = output{ID: in.ID, Errors: []string{}, Filters: []json.RawMessage{}}
	defer func() {
		if r := recover(); r != nil {
			out.Errors = append(out.Errors, fmt.Sprintf("oracle panic: %v", r))
		}
	}()
	ns := in.Namespace
	if ns == "" {
		ns = "foo"
	}
	td := in.TrustDomain
	if td == "" {
		td = "cluster.local"
	}
	configs, _, err := crd.ParseInputs(in.YAML)
	if err != nil {
		out.Errors = append(out.Errors, "parse: "+err.Error())
		return out
	}
	store := memory.Make(collections.Pilot)
	for _, c := range configs {
		if c.Namespace == "" {
			c.Namespace = ns
		}
		if _, err := validation.ValidateAuthorizationPolicy(c); err != nil {
			out.Errors = append(out.Errors, err.Error())
			continue
		}
		if _, err := store.Create(c); err != nil {
			out.Errors = append(out.Errors, "store: "+err.Error())
		}
	}
	if len(out.Errors) > 0 {
		return out
	}
	mesh := &meshconfig.MeshConfig{RootNamespace: "istio-system", TrustDomain: td, TrustDomainAliases: in.Aliases}
	env := &model.Environment{ConfigStore: store}
	policies := model.GetAuthorizationPolicies(env)
	push := &model.PushContext{AuthzPolicies: policies, Mesh: mesh}
	proxy := &model.Proxy{ID: "oracle", ConfigNamespace: ns, Labels: map[string]string{}, Metadata: &model.NodeMetadata{Namespace: ns}}
	list := policies.ListAuthorizationPolicies(model.PolicyMatcherForProxy(proxy))
	b := builder.New(trustdomain.NewBundle(td, in.Aliases), push, list, builder.Option{})
	if b == nil {
		return out
	}
	for _, f := range b.BuildHTTP() {
		out.Filters = append(out.Filters, filterJSON(f))
	}
	return out
}

func filterJSON(f *hcm.HttpFilter) json.RawMessage {
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(f)
	if err != nil {
		panic(err)
	}
	return b
}

func main() {
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	for sc.Scan() {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var in input
		if err := json.Unmarshal(sc.Bytes(), &in); err != nil {
			fmt.Fprintf(os.Stderr, "istio-oracle: bad input line: %v\n", err)
			os.Exit(2)
		}
		b, _ := json.Marshal(run(in))
		w.Write(b)
		w.WriteByte('\n')
		w.Flush()
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "istio-oracle: %v\n", err)
		os.Exit(1)
	}
}
