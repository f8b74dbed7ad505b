package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
)

// Override is a field that a flag or an environment variable can set.
type Override struct {
	Field string // YAML path, e.g. "log.format"
	Env   string // RAFTELECT_...
	Flag  string // without dashes
	Usage string
	Bool  bool // a switch: the flag may be given without a value
	set   func(n *Node, v string) error
}

// Overrides lists every field settable from the command line and the
// environment. cmd/raftelect registers one flag per entry.
var Overrides = []Override{
	{Field: "name", Env: "RAFTELECT_NAME", Flag: "name", Usage: "this node's name (one of peers)", set: setString(func(n *Node) *string { return &n.Name })},
	{Field: "peers", Env: "RAFTELECT_PEERS", Flag: "peers", Usage: "every node: name=host:port,name=host:port,...", set: setPeers},
	{Field: "listen_address", Env: "RAFTELECT_LISTEN_ADDRESS", Flag: "listen-address", Usage: "bind the peer listener here instead of this node's peer address", set: setString(func(n *Node) *string { return &n.ListenAddress })},
	{Field: "heartbeat_interval", Env: "RAFTELECT_HEARTBEAT_INTERVAL", Flag: "heartbeat-interval", Usage: "leader heartbeat interval, the raft tick (e.g. 100ms)", set: setDuration(func(n *Node) *Duration { return &n.HeartbeatInterval })},
	{Field: "election_timeout", Env: "RAFTELECT_ELECTION_TIMEOUT", Flag: "election-timeout", Usage: "election timeout (e.g. 1s)", set: setDuration(func(n *Node) *Duration { return &n.ElectionTimeout })},
	{Field: "tls.ca_file", Env: "RAFTELECT_TLS_CA_FILE", Flag: "tls-ca-file", Usage: "CA certificate (PEM)", set: setString(func(n *Node) *string { return &n.TLS.CAFile })},
	{Field: "tls.cert_file", Env: "RAFTELECT_TLS_CERT_FILE", Flag: "tls-cert-file", Usage: "this node's certificate (PEM)", set: setString(func(n *Node) *string { return &n.TLS.CertFile })},
	{Field: "tls.key_file", Env: "RAFTELECT_TLS_KEY_FILE", Flag: "tls-key-file", Usage: "this node's private key (PEM)", set: setString(func(n *Node) *string { return &n.TLS.KeyFile })},
	{Field: "cluster_id", Env: "RAFTELECT_CLUSTER_ID", Flag: "cluster-id", Usage: "the cluster's ID (32 hex digits; empty: a new cluster makes one)", set: setString(func(n *Node) *string { return &n.ClusterID })},
	{Field: "stream_heartbeats_only", Env: "RAFTELECT_STREAM_HEARTBEATS_ONLY", Flag: "stream-heartbeats-only", Usage: "send heartbeats only on the TCP streams, never as UDP datagrams on the peer port's number", Bool: true, set: setBool(func(n *Node) *bool { return &n.StreamHeartbeatsOnly })},
	{Field: "fast_failover_on_refusal", Env: "RAFTELECT_FAST_FAILOVER_ON_REFUSAL", Flag: "fast-failover-on-refusal", Usage: "take a refused connection to the leader as proof it is gone (only without firewalls, proxies or load balancers in the path; docs/safety.md)", Bool: true, set: setBool(func(n *Node) *bool { return &n.FastFailoverOnRefusal })},
	{Field: "join", Env: "RAFTELECT_JOIN", Flag: "join", Usage: "join a running cluster (needs --cluster-id): wait with an empty store until a member adds this node (raftelect members add)", Bool: true, set: setBool(func(n *Node) *bool { return &n.Join })},
	{Field: "fail_back_after", Env: "RAFTELECT_FAIL_BACK_AFTER", Flag: "fail-back-after", Usage: "how long the cluster must be stable before leadership returns to the member of highest priority (default 3 election timeouts; negative: never)", set: setDuration(func(n *Node) *Duration { return &n.FailBackAfter })},
	{Field: "insecure", Env: "RAFTELECT_INSECURE", Flag: "insecure", Usage: "no TLS (tests and demos on loopback only)", Bool: true, set: setBool(func(n *Node) *bool { return &n.Insecure })},
	{Field: "data_dir", Env: "RAFTELECT_DATA_DIR", Flag: "data-dir", Usage: "directory of the durable raft store (empty: in memory)", set: setString(func(n *Node) *string { return &n.DataDir })},
	{Field: "http_address", Env: "RAFTELECT_HTTP_ADDRESS", Flag: "http-address", Usage: "host:port for /metrics, /healthz, /readyz (empty: none)", set: setString(func(n *Node) *string { return &n.HTTPAddress })},
	{Field: "log.level", Env: "RAFTELECT_LOG_LEVEL", Flag: "log-level", Usage: "debug, info, warn or error", set: setString(func(n *Node) *string { return &n.Log.Level })},
	{Field: "log.format", Env: "RAFTELECT_LOG_FORMAT", Flag: "log-format", Usage: "text or json", set: setString(func(n *Node) *string { return &n.Log.Format })},
	{Field: "event_log", Env: "RAFTELECT_EVENT_LOG", Flag: "event-log", Usage: "append leadership events as JSON lines to this file", set: setString(func(n *Node) *string { return &n.EventLog })},
	{Field: "pprof", Env: "RAFTELECT_PPROF", Flag: "pprof", Usage: "serve /debug/pprof on the HTTP address", Bool: true, set: setBool(func(n *Node) *bool { return &n.Pprof })},
}

// LoadOptions are the overrides applied on top of the file.
type LoadOptions struct {
	// Env looks up environment variables (os.LookupEnv); nil reads none.
	Env func(string) (string, bool)
	// Flags maps an Override's Flag to the value given on the command line
	// (only flags the user actually set).
	Flags map[string]string
}

// Load reads the YAML file at path (none if path is ""), applies
// environment and flag overrides, fills defaults and validates. Every
// problem found is reported, each naming its field; the error is an *Error.
func Load(path string, o LoadOptions) (*Node, error) {
	var data []byte
	if path != "" {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
	}
	return load(path, data, o)
}

// load is Load with the file's contents already read (FuzzLoad calls it
// directly, so the fuzzer spends its time parsing, not on the disk).
func load(path string, data []byte, o LoadOptions) (*Node, error) {
	n := &Node{file: path, lines: map[string]int{}, sources: map[string]string{}}
	if path != "" {
		if err := n.decode(data); err != nil {
			return nil, err
		}
		n.resolvePaths(filepath.Dir(path))
	}
	var errs []FieldError
	for _, ov := range Overrides {
		src, v, ok := "", "", false
		if f, set := o.Flags[ov.Flag]; set {
			src, v, ok = "--"+ov.Flag, f, true
		} else if o.Env != nil {
			if e, set := o.Env(ov.Env); set {
				src, v, ok = ov.Env, e, true
			}
		}
		if !ok {
			continue
		}
		n.sources[ov.Field] = src
		if ov.Field == "peers" {
			for k := range n.lines {
				if strings.HasPrefix(k, "peers[") {
					delete(n.lines, k)
				}
			}
		}
		if err := ov.set(n, v); err != nil {
			errs = append(errs, FieldError{Field: ov.Field, Msg: err.Error()})
		}
	}
	n.withDefaults()
	errs = append(errs, n.validate()...)
	if len(errs) > 0 {
		return nil, n.errorOf(errs)
	}
	return n, nil
}

// decode parses the file strictly: an unknown field, a wrong type or a
// duplicate key is an error naming the field and its line.
func (n *Node) decode(data []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return &Error{File: n.file, Problems: []FieldError{{Msg: strings.TrimPrefix(err.Error(), "yaml: ")}}}
	}
	if len(doc.Content) == 0 {
		return nil // an empty file: everything from flags and environment
	}
	var errs []FieldError
	walk(doc.Content[0], "", reflect.TypeFor[Node](), n.lines, &errs)
	if len(errs) > 0 {
		return n.errorOf(errs)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(n); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return &Error{File: n.file, Problems: []FieldError{{Msg: strings.TrimPrefix(err.Error(), "yaml: ")}}}
		}
		for _, s := range te.Errors {
			errs = append(errs, n.typeError(s))
		}
		return n.errorOf(errs)
	}
	return nil
}

// lineRE is compiled on the first type error, not at package
// initialisation: a node whose config loads never needs it.
var lineRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^line (\d+): (.*)$`) })

// typeError turns one of yaml's "line N: cannot unmarshal ..." messages
// into a FieldError naming the field on that line.
func (n *Node) typeError(s string) FieldError {
	m := lineRE().FindStringSubmatch(s)
	if m == nil {
		return FieldError{Msg: s}
	}
	line, _ := strconv.Atoi(m[1])
	fe := FieldError{Line: line, Msg: m[2]}
	// The deepest field on that line is the one whose value is wrong.
	for f, l := range n.lines {
		if l == line && len(f) > len(fe.Field) {
			fe.Field = f
		}
	}
	return fe
}

// walk records the line of every field and reports unknown ones, with the
// list of known names so that a typo is easy to fix.
func walk(y *yaml.Node, path string, t reflect.Type, lines map[string]int, errs *[]FieldError) {
	if y.Kind == yaml.AliasNode {
		y = y.Alias
	}
	switch {
	case t.Kind() == reflect.Struct && t != reflect.TypeFor[Duration]() && y.Kind == yaml.MappingNode:
		fields := map[string]reflect.Type{}
		var known []string
		for i := range t.NumField() {
			f := t.Field(i)
			if tag := strings.Split(f.Tag.Get("yaml"), ",")[0]; tag != "" && tag != "-" {
				fields[tag] = f.Type
				known = append(known, tag)
			}
		}
		for i := 0; i+1 < len(y.Content); i += 2 {
			k, v := y.Content[i], y.Content[i+1]
			p := join(path, k.Value)
			ft, ok := fields[k.Value]
			if !ok {
				*errs = append(*errs, FieldError{Field: p, Line: k.Line,
					Msg: fmt.Sprintf("unknown field %q; known fields here: %s", k.Value, strings.Join(known, ", "))})
				continue
			}
			lines[p] = k.Line
			walk(v, p, ft, lines, errs)
		}
	case t.Kind() == reflect.Slice && y.Kind == yaml.SequenceNode:
		for i, v := range y.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			lines[p] = v.Line
			walk(v, p, t.Elem(), lines, errs)
		}
	case t.Kind() == reflect.Map && y.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(y.Content); i += 2 {
			lines[join(path, y.Content[i].Value)] = y.Content[i].Line
		}
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// UnmarshalYAML reads "100ms", "1s", ... A bare number is rejected: its unit
// would be a guess.
func (d *Duration) UnmarshalYAML(y *yaml.Node) error {
	v, err := time.ParseDuration(y.Value)
	if y.Kind != yaml.ScalarNode || err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %q is not a duration; write it with a unit, e.g. 100ms or 1s", y.Line, y.Value)}}
	}
	*d = Duration(v)
	return nil
}

// resolvePaths makes the file's relative paths relative to its directory.
func (n *Node) resolvePaths(dir string) {
	for _, p := range []*string{&n.TLS.CAFile, &n.TLS.CertFile, &n.TLS.KeyFile, &n.DataDir, &n.EventLog} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
}

func setString(f func(*Node) *string) func(*Node, string) error {
	return func(n *Node, v string) error { *f(n) = v; return nil }
}

func setBool(f func(*Node) *bool) func(*Node, string) error {
	return func(n *Node, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%q is not true or false", v)
		}
		*f(n) = b
		return nil
	}
}

func setDuration(f func(*Node) *Duration) func(*Node, string) error {
	return func(n *Node, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("%q is not a duration; write it with a unit, e.g. 100ms or 1s", v)
		}
		*f(n) = Duration(d)
		return nil
	}
}

// ParsePeers reads "n1=host:port,n2=host:port" (the form of --peers and
// RAFTELECT_PEERS).
func ParsePeers(v string) ([]Peer, error) {
	var out []Peer
	for item := range strings.SplitSeq(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, addr, ok := strings.Cut(item, "=")
		if !ok {
			return nil, fmt.Errorf("%q is not name=host:port", item)
		}
		out = append(out, Peer{Name: strings.TrimSpace(name), Address: strings.TrimSpace(addr)})
	}
	return out, nil
}

func setPeers(n *Node, v string) error {
	peers, err := ParsePeers(v)
	if err != nil {
		return err
	}
	n.Peers = peers
	return nil
}

// FieldError is one problem with one field.
type FieldError struct {
	Field  string // YAML path, e.g. peers[1].address; "" for the whole file
	Line   int    // line in the file, 0 if unknown or not from the file
	Source string // flag or environment variable that set the value, if any
	Msg    string
}

func (e FieldError) String() string {
	var b strings.Builder
	if e.Field != "" {
		b.WriteString(e.Field)
		if e.Source != "" {
			fmt.Fprintf(&b, " (from %s)", e.Source)
		}
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Error is every problem found in a configuration.
type Error struct {
	File     string
	Problems []FieldError
}

func (e *Error) Error() string {
	lines := make([]string, 0, len(e.Problems))
	for _, p := range e.Problems {
		prefix := ""
		switch {
		case e.File != "" && p.Line > 0:
			prefix = fmt.Sprintf("%s:%d: ", e.File, p.Line)
		case e.File != "" && p.Source == "":
			prefix = e.File + ": "
		}
		lines = append(lines, prefix+p.String())
	}
	return strings.Join(lines, "\n")
}

// errorOf fills in each problem's line and source and sorts them by line.
func (n *Node) errorOf(errs []FieldError) *Error {
	for i := range errs {
		f := &errs[i]
		if f.Source == "" {
			f.Source = n.overrideOf(f.Field)
		}
		if f.Line == 0 && f.Source == "" {
			f.Line = n.lines[f.Field]
		}
	}
	slices.SortStableFunc(errs, func(a, b FieldError) int { return a.Line - b.Line })
	return &Error{File: n.file, Problems: errs}
}

// overrideOf returns the flag or variable that set field (or its parent,
// for peers[1].address set by --peers).
func (n *Node) overrideOf(field string) string {
	for f := field; f != ""; {
		if s, ok := n.sources[f]; ok {
			return s
		}
		i := strings.LastIndexAny(f, ".[")
		if i < 0 {
			break
		}
		f = f[:i]
	}
	return ""
}
