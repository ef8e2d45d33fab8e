// opa-authz: OPA behind Envoy's ext_authz filter (gRPC, API v3), for the benchmark's `opa-*` variants.
//
// It does per check what opa-envoy-plugin does (envoyauth.RequestToInput, envoyauth.Eval, its gRPC Check):
// the CheckRequest becomes the plugin's input document (the request message as a map with JSON field names,
// plus version, parsed_path, parsed_query, parsed_body, truncated_body and source_principal), the map becomes an
// ast.Value, a fresh decision id, metrics and read transaction are set up, and one evaluation of a query
// prepared once at start decides. A `true` decision answers OK, anything else PERMISSION_DENIED (Envoy sends 403).
// What it leaves out (decision logs, Prometheus metrics, tracing, bundles, dry-run, response headers from an
// object decision) is listed in docs/benchmarks.md.
//
//	opa-authz -addr 127.0.0.1:9191 -policy policy.rego -data data.json [-query data.envoy.authz.allow]
//	opa-authz -policy policy.rego -data data.json -decide < requests.jsonl
//
// With -decide it reads one JSON request per line ({"principal","method","path"}) and prints "allow" or "deny"
// per line, through the same Check function, for tests that need no Envoy.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/uuid"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/util"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/reflect/protoreflect"
)

type authorizer struct {
	authv3.UnimplementedAuthorizationServer
	store storage.Store
	query rego.PreparedEvalQuery
}

// load parses the policy, reads the data document into an in-memory store and prepares the query once.
func load(ctx context.Context, policyPath, dataPath, query string) (*authorizer, error) {
	policy, err := os.ReadFile(policyPath)
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(dataPath)
	if err != nil {
		return nil, err
	}
	var data map[string]any
	if err := util.UnmarshalJSON(raw, &data); err != nil {
		return nil, fmt.Errorf("%s: %w", dataPath, err)
	}
	store := inmem.NewFromObject(data)
	pq, err := rego.New(
		rego.Query(query),
		rego.Module(policyPath, string(policy)),
		rego.Store(store),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, err
	}
	return &authorizer{store: store, query: pq}, nil
}

// Check decides one request, as opa-envoy-plugin's check does for a boolean decision.
func (a *authorizer) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	allowed, err := a.decide(ctx, req)
	if err != nil {
		// The plugin answers an input it cannot build with PERMISSION_DENIED, and fails the call on an evaluation
		// error (which Envoy's ext_authz, failure_mode_allow false, turns into a 403 as well).
		return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(code.Code_PERMISSION_DENIED), Message: err.Error()}}, nil
	}
	status := code.Code_PERMISSION_DENIED
	if allowed {
		status = code.Code_OK
	}
	return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(status)}}, nil
}

func (a *authorizer) decide(ctx context.Context, req *authv3.CheckRequest) (bool, error) {
	// Per check, as the plugin: a decision id, metrics with the server handler timer, a read transaction.
	decisionID := uuid.NewString()
	m := metrics.New()
	m.Timer(metrics.ServerHandler).Start()
	defer m.Timer(metrics.ServerHandler).Stop()
	txn, err := a.store.NewTransaction(ctx, storage.TransactionParams{})
	if err != nil {
		return false, err
	}
	defer a.store.Abort(ctx, txn)

	input, err := requestToInput(req)
	if err != nil {
		return false, fmt.Errorf("decision %s: %w", decisionID, err)
	}
	value, err := ast.InterfaceToValue(input)
	if err != nil {
		return false, err
	}
	rs, err := a.query.Eval(ctx, rego.EvalParsedInput(value), rego.EvalTransaction(txn), rego.EvalMetrics(m))
	switch {
	case err != nil:
		return false, err
	case len(rs) == 0:
		return false, errors.New("undefined decision")
	case len(rs) > 1:
		return false, errors.New("multiple evaluation results")
	}
	allowed, ok := rs[0].Expressions[0].Value.(bool)
	if !ok {
		return false, fmt.Errorf("non-boolean decision %T", rs[0].Expressions[0].Value)
	}
	return allowed, nil
}

// requestToInput builds the plugin's input document for an ext_authz v3 request.
func requestToInput(req *authv3.CheckRequest) (map[string]any, error) {
	input := messageMap(req.ProtoReflect())
	input["version"] = map[string]any{"ext_authz": "v3", "encoding": "protojson"}
	httpReq := req.GetAttributes().GetRequest().GetHttp()
	rawPath, rawQuery, _ := strings.Cut(httpReq.GetPath(), "?")
	decoded, err := url.PathUnescape(rawPath)
	if err != nil {
		return nil, err
	}
	segments := strings.Split(strings.TrimLeft(decoded, "/"), "/")
	parsedPath := make([]any, len(segments))
	for i, s := range segments {
		parsedPath[i] = s
	}
	input["parsed_path"] = parsedPath
	query, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, err
	}
	parsedQuery := make(map[string]any, len(query))
	for k, vs := range query {
		list := make([]any, len(vs))
		for i, v := range vs {
			list[i] = v
		}
		parsedQuery[k] = list
	}
	input["parsed_query"] = parsedQuery
	body, truncated, err := parsedBody(httpReq.GetHeaders(), httpReq.GetBody())
	if err != nil {
		return nil, err
	}
	input["parsed_body"] = body
	input["truncated_body"] = truncated
	if p := req.GetAttributes().GetSource().GetPrincipal(); p != "" {
		input["source_principal"] = p
	}
	return input, nil
}

// parsedBody parses a JSON body (the only body type the benchmark's requests could carry); other content types
// give no parsed body, as in the plugin.
func parsedBody(headers map[string]string, body string) (any, bool, error) {
	if headers["x-envoy-auth-partial-body"] == "true" {
		return nil, true, nil
	}
	if !strings.Contains(headers["content-type"], "application/json") || body == "" {
		return nil, false, nil
	}
	var data any
	if err := util.UnmarshalJSON([]byte(body), &data); err != nil {
		return nil, false, err
	}
	return data, false, nil
}

// messageMap turns a protobuf message into maps, lists and scalars keyed by JSON field names (set fields only).
func messageMap(msg protoreflect.Message) map[string]any {
	if s, ok := msg.Interface().(interface{ AsMap() map[string]any }); ok {
		return s.AsMap() // google.protobuf.Struct (metadata)
	}
	out := make(map[string]any, msg.Descriptor().Fields().Len())
	msg.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
			m := make(map[string]any, v.Map().Len())
			isMsg := fd.MapValue().Kind() == protoreflect.MessageKind
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				if isMsg {
					m[k.String()] = messageMap(mv.Message())
				} else {
					m[k.String()] = mv.Interface()
				}
				return true
			})
			out[fd.JSONName()] = m
		case fd.IsList():
			l := make([]any, v.List().Len())
			for i := range l {
				if fd.Kind() == protoreflect.MessageKind {
					l[i] = messageMap(v.List().Get(i).Message())
				} else {
					l[i] = v.List().Get(i).Interface()
				}
			}
			out[fd.JSONName()] = l
		case fd.Kind() == protoreflect.MessageKind:
			out[fd.JSONName()] = messageMap(v.Message())
		default:
			out[fd.JSONName()] = v.Interface()
		}
		return true
	})
	return out
}

// decideLines is -decide: one request per input line, one decision per output line.
func decideLines(ctx context.Context, a *authorizer) error {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for in.Scan() {
		if strings.TrimSpace(in.Text()) == "" {
			continue
		}
		var r struct{ Principal, Method, Path string }
		if err := json.Unmarshal(in.Bytes(), &r); err != nil {
			return fmt.Errorf("bad request line %q: %w", in.Text(), err)
		}
		req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Source: &authv3.AttributeContext_Peer{Principal: r.Principal, Address: &corev3.Address{}},
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: r.Method, Path: r.Path, Headers: map[string]string{":method": r.Method, ":path": r.Path},
			}},
		}}
		resp, err := a.Check(ctx, req)
		if err != nil {
			return err
		}
		if resp.GetStatus().GetCode() == int32(code.Code_OK) {
			fmt.Fprintln(out, "allow")
		} else {
			fmt.Fprintln(out, "deny")
		}
	}
	return in.Err()
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9191", "gRPC listen address")
	policy := flag.String("policy", "", "Rego policy file")
	data := flag.String("data", "", "JSON data document")
	query := flag.String("query", "data.envoy.authz.allow", "decision (opa-envoy-plugin's default path envoy/authz/allow)")
	decide := flag.Bool("decide", false, "read JSON requests on stdin, print allow/deny per line, and exit")
	flag.Parse()
	if *policy == "" || *data == "" {
		fmt.Fprintln(os.Stderr, "opa-authz: -policy and -data are required")
		os.Exit(2)
	}
	ctx := context.Background()
	started := time.Now()
	a, err := load(ctx, *policy, *data, *query)
	if err != nil {
		fmt.Fprintf(os.Stderr, "opa-authz: %v\n", err)
		os.Exit(1)
	}
	if *decide {
		if err := decideLines(ctx, a); err != nil {
			fmt.Fprintf(os.Stderr, "opa-authz: %v\n", err)
			os.Exit(1)
		}
		return
	}
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "opa-authz: %v\n", err)
		os.Exit(1)
	}
	server := grpc.NewServer()
	authv3.RegisterAuthorizationServer(server, a)
	// The benchmark waits for this line: the query is prepared and the port is open.
	fmt.Printf("opa-authz: serving %s on %s (loaded in %d ms)\n", *query, lis.Addr(), time.Since(started).Milliseconds())
	if err := server.Serve(lis); err != nil {
		fmt.Fprintf(os.Stderr, "opa-authz: %v\n", err)
		os.Exit(1)
	}
}
