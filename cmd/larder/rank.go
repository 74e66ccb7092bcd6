package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

// rankOptions are the flags of larder rank.
type rankOptions struct {
	addr       string
	candidates []string
	request    []string
	topK       int
	explain    bool
	asJSON     bool
	timeout    time.Duration
	client     clientOptions
}

func (a *app) rankCommand() *cobra.Command {
	var o rankOptions
	cmd := &cobra.Command{
		Use:   "rank RANKER CONTEXT_KEY",
		Short: "Ask a running server to rank candidates for one context entity",
		Long: `rank calls Rank on a running larder serve, as a product service would, and
prints the candidates it returns with their scores. Without --candidates it
ranks the context entity's stored list (the ranker's candidates_from view).

Keys and request features are typed by the project file: --request takes
name=value, once per request feature, and a value is read as the type the
ranker declares for it. With --explain it also prints, per candidate, the
input the model saw and where each value came from (present, missing, null,
stale, request or request default).

rank calls --addr, or server.listen of the project file. A server that
checks its callers (server.auth) needs a token of the read role, with
--token-file, --token or LARDER_TOKEN, or a client certificate with
--cert-file and --key-file. When the address comes from the project file
and server.tls_cert_file is set, rank speaks TLS and trusts that
certificate; with --addr, pass --tls and --ca-file.`,
		Example: `  larder rank home_feed 42
  larder rank home_feed 42 --candidates 7,9,12 --request hour_of_day=20 --explain`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runRank(cmd.Context(), args[0], args[1], o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.addr, "addr", "", "the server's gRPC address, host:port (default: server.listen of the project file)")
	f.StringSliceVar(&o.candidates, "candidates", nil, "candidate keys, comma-separated (default: the context's stored list)")
	f.StringArrayVar(&o.request, "request", nil, "a request feature, name=value (repeat the flag for more)")
	f.IntVar(&o.topK, "top-k", 0, "how many candidates to return (default: the ranker's top_k)")
	f.BoolVar(&o.explain, "explain", false, "print each candidate's model input and where its values came from")
	f.BoolVar(&o.asJSON, "json", false, "print the response as JSON")
	f.DurationVar(&o.timeout, "timeout", 10*time.Second, "how long to wait for the answer")
	o.client.addFlags(cmd)
	return cmd
}

func (a *app) runRank(ctx context.Context, name, contextKey string, o rankOptions) error {
	p, err := a.loadConfig()
	if err != nil {
		return err
	}
	r := p.Ranker(name)
	if r == nil {
		return fmt.Errorf("unknown ranker %q (the project file declares: %s)", name, rankerNames(p))
	}
	req := &larderv1.RankRequest{Ranker: name, TopK: int32(o.topK), Explain: o.explain}
	if req.ContextKey, err = cliKey(r.ContextDef(), contextKey); err != nil {
		return fmt.Errorf("context key: %w", err)
	}
	for _, s := range o.candidates {
		k, err := cliKey(r.CandidateDef(), s)
		if err != nil {
			return fmt.Errorf("--candidates: %w", err)
		}
		req.CandidateKeys = append(req.CandidateKeys, k)
	}
	if req.RequestFeatures, err = requestFeatures(r, o.request); err != nil {
		return err
	}

	// An address on the command line may name another server than the
	// project file's, whose TLS settings then do not apply.
	addr, from := o.addr, (*larder.Project)(nil)
	if addr == "" {
		addr, from = p.Server.Listen, p
	}
	conn, err := o.client.dial(addr, from)
	if err != nil {
		return fmt.Errorf("rank: server %s: %w", addr, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	resp, err := larderv1.NewFeatureServiceClient(conn).Rank(ctx, req)
	if err != nil {
		st := status.Convert(err)
		return fmt.Errorf("rank %s at %s: %s: %s%s%s", name, addr, st.Code(), st.Message(), o.client.hint(st, from), a.otherProject(st, p))
	}
	if o.asJSON {
		b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(resp)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(a.stdout, string(b))
		return err
	}
	return a.printRank(resp)
}

// otherProject says which server to call when st is the refusal, by the
// server of another project than p, of a name p declares: the server names
// its project in it.
func (a *app) otherProject(st *status.Status, p *larder.Project) string {
	msg := st.Message()
	if st.Code() != codes.InvalidArgument || !strings.Contains(msg, "(the server's project ") || strings.Contains(msg, "(the server's project "+p.Name+" ") {
		return ""
	}
	return fmt.Sprintf("; the project file %s is project %s: pass --addr the address of a server of project %s", a.configPath, p.Name, p.Name)
}

func (a *app) printRank(resp *larderv1.RankResponse) error {
	gens := make([]string, len(resp.GetGenerations()))
	for i, g := range resp.GetGenerations() {
		gens[i] = g.GetView() + "@" + strconv.FormatInt(g.GetGeneration(), 10)
	}
	fmt.Fprintf(a.stdout, "model %s; generations %s\n", resp.GetModelVersion(), strings.Join(gens, ", "))
	if resp.GetDegraded() {
		fmt.Fprintf(a.stdout, "DEGRADED: %s (candidates in their precomputed order)\n", resp.GetDegradedReason())
	}
	if len(resp.GetCandidates()) == 0 {
		fmt.Fprintln(a.stdout, "no candidates")
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RANK\tKEY\tSCORE")
	for i, c := range resp.GetCandidates() {
		fmt.Fprintf(tw, "%d\t%s\t%.6g\n", i+1, keyText(c.GetKey()), c.GetScore())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(resp.GetInputNames()) == 0 {
		return nil
	}
	// The explanation: one row per input, one column per candidate.
	fmt.Fprintln(a.stdout)
	tw = tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprint(tw, "INPUT")
	for _, c := range resp.GetCandidates() {
		fmt.Fprintf(tw, "\t%s", keyText(c.GetKey()))
	}
	fmt.Fprintln(tw)
	for j, name := range resp.GetInputNames() {
		fmt.Fprint(tw, name)
		for _, c := range resp.GetCandidates() {
			e := c.GetExplanation()
			if j >= len(e.GetInputs()) {
				fmt.Fprint(tw, "\t-")
				continue
			}
			fmt.Fprintf(tw, "\t%.6g", e.GetInputs()[j])
			if j < len(e.GetSources()) {
				if s := sourceNote(e.GetSources()[j]); s != "" {
					fmt.Fprintf(tw, " (%s)", s)
				}
			}
			if j < len(e.GetPushed()) && e.GetPushed()[j] && j < len(e.GetEventTimeMicros()) {
				// A value pushed or streamed in since the view's last run.
				fmt.Fprintf(tw, " (pushed %s)", time.UnixMicro(e.GetEventTimeMicros()[j]).UTC().Format(time.RFC3339))
			}
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// sourceNote says where an explained input came from, or "" when it is a
// stored value that was present.
func sourceNote(s larderv1.InputSource) string {
	switch s {
	case larderv1.InputSource_INPUT_SOURCE_PRESENT:
		return ""
	case larderv1.InputSource_INPUT_SOURCE_MISSING:
		return "missing: default"
	case larderv1.InputSource_INPUT_SOURCE_NULL:
		return "null: default"
	case larderv1.InputSource_INPUT_SOURCE_STALE:
		return "stale: default"
	case larderv1.InputSource_INPUT_SOURCE_REQUEST:
		return "request"
	case larderv1.InputSource_INPUT_SOURCE_REQUEST_DEFAULT:
		return "request default"
	}
	return "unknown"
}

// cliKey parses an entity key typed on the command line.
func cliKey(e *larder.Entity, s string) (*larderv1.EntityKey, error) {
	k, err := larder.ParseKey(e.KeyType, s)
	if err != nil {
		return nil, fmt.Errorf("entity %s is keyed by %s %s: %w", e.Name, e.KeyType, e.Key, err)
	}
	if k.Type() == larder.TypeString {
		return &larderv1.EntityKey{Key: &larderv1.EntityKey_StringValue{StringValue: k.Str()}}, nil
	}
	return &larderv1.EntityKey{Key: &larderv1.EntityKey_Int64Value{Int64Value: k.Int64()}}, nil
}

func keyText(k *larderv1.EntityKey) string {
	if s, ok := k.GetKey().(*larderv1.EntityKey_StringValue); ok {
		return s.StringValue
	}
	return strconv.FormatInt(k.GetInt64Value(), 10)
}

// requestFeatures parses --request name=value flags as the types the ranker
// declares for its request inputs.
func requestFeatures(r *larder.Ranker, flags []string) (map[string]*larderv1.Value, error) {
	if len(flags) == 0 {
		return nil, nil
	}
	types := map[string]larder.Type{}
	var names []string
	for i := range r.Inputs {
		in := &r.Inputs[i]
		if in.Side == larder.SideRequest {
			types[in.Request] = in.RequestType()
			names = append(names, in.Request+" "+in.RequestType().String())
		}
	}
	out := make(map[string]*larderv1.Value, len(flags))
	for _, f := range flags {
		name, text, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("--request %q: write name=value", f)
		}
		t, known := types[name]
		if !known {
			if len(names) == 0 {
				return nil, fmt.Errorf("--request %s: ranker %s takes no request features", name, r.Name)
			}
			return nil, fmt.Errorf("--request %s: ranker %s has no such request feature (it takes: %s)", name, r.Name, strings.Join(names, ", "))
		}
		v, err := parseRequestValue(t, text)
		if err != nil {
			return nil, fmt.Errorf("--request %s=%s: %s is %s: %w", name, text, name, t, err)
		}
		out[name] = v
	}
	return out, nil
}

func parseRequestValue(t larder.Type, s string) (*larderv1.Value, error) {
	switch t {
	case larder.TypeInt64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("not an integer")
		}
		return &larderv1.Value{Kind: &larderv1.Value_Int64Value{Int64Value: n}}, nil
	case larder.TypeBool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return nil, fmt.Errorf("not true or false")
		}
		return &larderv1.Value{Kind: &larderv1.Value_BoolValue{BoolValue: b}}, nil
	case larder.TypeFloat32:
		x, err := strconv.ParseFloat(s, 32)
		if err != nil {
			return nil, fmt.Errorf("not a number")
		}
		return &larderv1.Value{Kind: &larderv1.Value_Float32Value{Float32Value: float32(x)}}, nil
	default:
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("not a number")
		}
		return &larderv1.Value{Kind: &larderv1.Value_Float64Value{Float64Value: x}}, nil
	}
}

func rankerNames(p *larder.Project) string {
	if len(p.Rankers) == 0 {
		return "no rankers"
	}
	names := make([]string, len(p.Rankers))
	for i, r := range p.Rankers {
		names[i] = r.Name
	}
	return strings.Join(names, ", ")
}
