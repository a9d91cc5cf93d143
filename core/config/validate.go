package config

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hookbus/hookbus/core/aggregate"
	"github.com/hookbus/hookbus/core/sinkopts"
	"github.com/hookbus/hookbus/core/subscription"
	"github.com/hookbus/hookbus/sdk"
)

// Validate checks a Config built in code (Load validates on its own) and
// resolves its relative paths against the directory of c.File (the working
// directory when File is ""). It returns nil or *Errors without line numbers.
func (c *Config) Validate(chk Checkers) error {
	c.normalize()
	errs := c.validate(chk)
	if len(errs) == 0 {
		return nil
	}
	out := Errors(sortErrors(errs))
	return &out
}

var (
	storeDrivers = []string{StoreSQLite, StorePostgres}
	logLevels    = []string{"debug", "info", "warn", "error"}
	logFormats   = []string{"text", "json"}
	validName    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*$`)
)

type validator struct {
	c       *Config
	base    string
	chk     Checkers
	errs    []Error
	scripts map[string]error // compile results by absolute path
}

func (v *validator) add(path, format string, args ...any) {
	v.errs = append(v.errs, Error{Path: path, Message: fmt.Sprintf(format, args...)})
}

// resolve makes p absolute against the configuration's directory.
func (v *validator) resolve(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(v.base, p)
}

// validate checks everything and resolves relative paths in place.
func (c *Config) validate(chk Checkers) []Error {
	base := "."
	if c.File != "" {
		base = filepath.Dir(c.File)
	}
	if abs, err := filepath.Abs(base); err == nil {
		base = abs
	}
	v := &validator{c: c, base: base, chk: chk, scripts: map[string]error{}}

	switch c.Version {
	case 1:
	case 0:
		v.add("version", "missing: add `version: 1` to the file")
	default:
		v.add("version", "unsupported version %d: this hookbus reads version 1", c.Version)
	}
	v.server()
	if strings.TrimSpace(c.DataDir) == "" {
		v.add("data_dir", "must not be empty")
	} else {
		c.DataDir = v.resolve(c.DataDir)
	}
	v.queueAndStore()
	v.scriptsAndLog()
	for _, name := range c.PluginNames() {
		v.plugin(name)
	}
	for _, name := range c.SourceNames() {
		v.component("source", name, c.Sources[name])
	}
	for _, name := range c.SinkNames() {
		v.component("sink", name, c.Sinks[name])
	}
	for _, name := range c.PipelineNames() {
		v.pipeline(name)
	}
	v.operationalEvents()
	v.console()
	return v.errs
}

func (v *validator) server() {
	s := v.c.Server
	if host, port, err := net.SplitHostPort(s.Listen); err != nil || strings.ContainsAny(host, " /") {
		v.add("server.listen", "must be host:port, like 127.0.0.1:8080 or :8080 (got %q)", s.Listen)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		v.add("server.listen", "port must be a number from 0 to 65535 (got %q)", port)
	}
	if s.MaxBody <= 0 {
		v.add("server.max_body", "must be a positive size, like 1MiB")
	}
	if s.ShutdownTimeout < 0 {
		v.add("server.shutdown_timeout", "must not be negative")
	}
	if s.MemoryLimit < 0 || s.MemoryLimit > 0 && s.MemoryLimit < MinMemoryLimit {
		v.add("server.memory_limit", "must be 0 (no limit) or at least 32MiB, like 256MiB (got %d bytes)", s.MemoryLimit)
	}
	s.checkLimits(func(key, msg string) { v.add(key, "%s", msg) })
}

func (v *validator) queueAndStore() {
	q := v.c.Queue
	if v.chk.Registry != nil {
		d, err := v.chk.Registry.QueueDriver(q.Driver)
		switch {
		case err != nil:
			v.add("queue.driver", "%v", err)
		case d.NeedsURL && strings.TrimSpace(q.URL) == "":
			v.add("queue.url", "required for queue driver %q", q.Driver)
		}
	}
	if !validNamespace(q.Namespace) {
		v.add("queue.namespace", "%q: use 1 to 32 letters, digits, - or _", q.Namespace)
	}
	if q.DedupWindow < 0 {
		v.add("queue.dedup_window", "must not be negative")
	}
	if q.AckWait != 0 && q.AckWait < time.Second {
		v.add("queue.ack_wait", "must be at least 1s (0 means the default, 30s), got %s", q.AckWait)
	}
	if q.MaxDeliveries < 0 {
		v.add("queue.max_deliveries", "must be at least 1 (0 means the default, 10), got %d", q.MaxDeliveries)
	}
	switch {
	case q.Replicas < 0 || q.Replicas > 5:
		v.add("queue.replicas", "must be 1 to 5 (JetStream keeps at most 5 replicas), got %d", q.Replicas)
	case q.Replicas > 1 && q.Driver != QueueNATS:
		v.add("queue.replicas", "%d replicas need a NATS JetStream cluster (queue.driver: nats); queue driver %q keeps one copy", q.Replicas, q.Driver)
	}
	s := v.c.Store
	switch {
	case !slices.Contains(storeDrivers, s.Driver):
		v.add("store.driver", "unknown driver %q (one of %s)", s.Driver, strings.Join(storeDrivers, ", "))
	case s.Driver == StorePostgres && strings.TrimSpace(s.DSN) == "":
		v.add("store.dsn", "required for store driver %q", s.Driver)
	}
	if strings.TrimSpace(s.EncryptionKey) != "" {
		if msg := checkEncryptionKey(s.EncryptionKey); msg != "" {
			v.add("store.encryption_key", "%s", msg)
		}
	}
	for i, k := range s.OldEncryptionKeys {
		if strings.TrimSpace(k) == "" {
			continue // no key
		}
		if msg := checkEncryptionKey(k); msg != "" {
			v.add(fmt.Sprintf("store.old_encryption_keys[%d]", i), "%s", msg)
		}
	}
	for _, r := range []struct {
		key, example string
		d            time.Duration
	}{{"store.event_retention", "168h", s.EventRetention}, {"store.attempt_retention", "720h", s.AttemptRetention}} {
		switch {
		case r.d <= 0:
			v.add(r.key, "must be a positive duration, like %s (got %s)", r.example, r.d)
		case r.d < time.Second:
			v.add(r.key, "must be at least 1s, like %s (got %s)", r.example, r.d)
		}
	}
}

// checkEncryptionKey says what is wrong with a store encryption key ("" if
// nothing): it must be the standard base64 of 32 bytes. The message never
// quotes the key.
func checkEncryptionKey(k string) string {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(k))
	switch {
	case err != nil:
		return "must be the base64 of 32 random bytes (make one with: openssl rand -base64 32); this is not valid base64"
	case len(b) != 32:
		return fmt.Sprintf("must be the base64 of 32 random bytes (make one with: openssl rand -base64 32); this decodes to %d bytes", len(b))
	}
	return ""
}

func (v *validator) scriptsAndLog() {
	s := v.c.Scripts
	if s.Timeout <= 0 {
		v.add("scripts.timeout", "must be a positive duration, like 100ms")
	}
	if s.PoolSize < 0 {
		v.add("scripts.pool_size", "must not be negative (0 means two runtimes per CPU)")
	}
	if s.MaxPayload <= 0 {
		v.add("scripts.max_payload", "must be a positive size, like 1MiB")
	}
	if s.MaxMemory <= 0 {
		v.add("scripts.max_memory", "must be a positive size, like 64MiB")
	}
	if s.MaxTimeouts < 0 {
		v.add("scripts.max_timeouts", "must be at least 1 (0 means the default, 3), got %d", s.MaxTimeouts)
	}
	l := v.c.Log
	if !slices.Contains(logLevels, l.Level) {
		v.add("log.level", "unknown level %q (one of %s)", l.Level, strings.Join(logLevels, ", "))
	}
	if !slices.Contains(logFormats, l.Format) {
		v.add("log.format", "unknown format %q (one of %s)", l.Format, strings.Join(logFormats, ", "))
	}
}

func (v *validator) name(path, name string) {
	if !validName.MatchString(name) {
		v.add(path, "invalid name %q: use letters, digits, '-' and '_', starting with a letter or digit", name)
	}
}

func (v *validator) plugin(name string) {
	path := "plugins." + name
	v.name(path, name)
	p := v.c.Plugins[name]
	if strings.TrimSpace(p.Path) == "" {
		v.add(path+".path", "required: the plugin executable")
	} else {
		abs := v.resolve(p.Path)
		if st, err := os.Stat(abs); err != nil {
			v.add(path+".path", "plugin executable %s not found (looked at %s)", p.Path, abs)
		} else if st.IsDir() {
			v.add(path+".path", "%s is a directory, not an executable", abs)
		}
		p.Path = abs
	}
	if p.SHA256 != "" {
		sum := strings.ToLower(strings.TrimSpace(p.SHA256))
		if b, err := hex.DecodeString(sum); err != nil || len(b) != 32 {
			v.add(path+".sha256", "must be 64 hexadecimal characters (a SHA-256 digest)")
		} else {
			p.SHA256 = sum
		}
	}
	if p.InitTimeout < 0 {
		v.add(path+".init_timeout", "must not be negative, got %s", p.InitTimeout)
	}
	if r := p.Reattach; r != "" {
		if n, addr, _ := strings.Cut(r, ":"); n != "unix" && n != "tcp" || addr == "" {
			v.add(path+".reattach", "%q is not a plugin debug address: use what the plugin printed, unix:/path/to/socket or tcp:host:port", r)
		}
	}
	v.c.Plugins[name] = p
}

// orderingDrivers are the queue drivers that can deliver a sink's events
// in order of their key (queue.Orderer).
var orderingDrivers = []string{QueueEmbedded, QueueNATS}

// fanoutSinkTypes are the built-in sink types that deliver an event to
// many targets, where ordering is not supported yet.
var fanoutSinkTypes = []string{"subscriptions"}

// sinkOrdering refuses a sink's `ordering` block where it cannot work: on
// a queue driver that cannot order, or on a fan-out sink. (The block's
// own keys are checked with the other shared settings.)
func (v *validator) sinkOrdering(path, typ string, raw json.RawMessage) {
	var block map[string]json.RawMessage
	if json.Unmarshal(raw, &block) != nil {
		return
	}
	if o, ok := block["ordering"]; !ok || string(bytes.TrimSpace(o)) == "null" {
		return
	}
	key := path + ".config.ordering"
	if d := v.c.Queue.Driver; d != "" && !slices.Contains(orderingDrivers, d) {
		v.add(key, "the %s queue driver cannot deliver in order: use queue.driver %s, or remove ordering", d, strings.Join(orderingDrivers, " or "))
	}
	if slices.Contains(fanoutSinkTypes, typ) {
		v.add(key, "not supported for %s sinks yet (only for sinks that deliver each event once: webhook and plugin sinks)", typ)
	}
	if b, ok := block["batch"]; ok && string(bytes.TrimSpace(b)) != "null" {
		v.add(key, "cannot be combined with batch yet: an ordered sink delivers each key's events one request after the other; remove one of the two")
	}
}

// component checks a source or sink: its type is known and its config
// block passes the type's spec. A sink's shared settings are checked
// whatever its type, plugins included: hookbus, not the plugin, acts on
// them.
func (v *validator) component(kind, name string, comp Component) {
	path := kind + "s." + name
	v.name(path, name)
	if strings.TrimSpace(comp.Type) == "" {
		v.add(path+".type", "required: a built-in %s type or a plugin name", kind)
		return
	}
	raw, err := comp.RawConfig()
	if err != nil {
		v.add(path+".config", "cannot encode as JSON: %v", err)
		return
	}
	reg := v.chk.Registry
	var known []string
	if kind == "sink" {
		v.sinkOrdering(path, comp.Type, raw)
	}
	if kind == "sink" {
		if reg == nil {
			_, _, problems := sinkopts.Split(raw)
			v.configProblems(path, problems)
			return
		}
		ok, problems := reg.CheckSink(comp.Type, raw)
		if ok || v.isPlugin(comp.Type) {
			v.configProblems(path, problems)
			return
		}
		known = reg.SinkNames()
	} else {
		if reg == nil || v.isPlugin(comp.Type) {
			return // a plugin validates its own config when it starts
		}
		t, err := reg.Source(comp.Type)
		if err == nil {
			v.configProblems(path, t.Spec.Check(raw))
			return
		}
		known = reg.SourceNames()
	}
	known = append(known, v.c.PluginNames()...)
	slices.Sort(known)
	v.add(path+".type", "unknown type %q (known %s types: %s)", comp.Type, kind, orNone(known))
}

// isPlugin reports whether typ names a declared plugin.
func (v *validator) isPlugin(typ string) bool {
	_, ok := v.c.Plugins[typ]
	return ok
}

// configProblems reports a spec's problems under path.config.
func (v *validator) configProblems(path string, err error) {
	for _, e := range Leaves(err) {
		var ce *sdk.ConfigError
		if errors.As(e, &ce) {
			p := path + ".config"
			if ce.Field != "" {
				if strings.HasPrefix(ce.Field, "[") {
					p += ce.Field
				} else {
					p += "." + ce.Field
				}
			}
			v.add(p, "%s", ce.Message)
			continue
		}
		v.add(path+".config", "%s", e.Error())
	}
}

// Leaves flattens errors.Join trees into their leaf errors (none for nil).
func Leaves(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, Leaves(e)...)
		}
		return out
	}
	return []error{err}
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func (v *validator) pipeline(name string) {
	path := "pipelines." + name
	v.name(path, name)
	p := v.c.Pipelines[name]
	v.refs(path+".from", p.From, "source", v.c.PipelineSources())
	v.refs(path+".to", p.To, "sink", v.c.SinkNames())
	steps := slices.Clone(p.Steps)
	aggregates := 0
	for i, st := range steps {
		sp := fmt.Sprintf("%s.steps[%d]", path, i)
		set := 0
		for _, has := range []bool{st.Filter != "", st.Transform != "", st.Aggregate != nil} {
			if has {
				set++
			}
		}
		switch {
		case set > 1:
			v.add(sp, "set exactly one of filter, transform or aggregate")
		case st.Filter != "":
			steps[i].Filter = v.script(sp+".filter", st.Filter)
		case st.Transform != "":
			steps[i].Transform = v.script(sp+".transform", st.Transform)
		case st.Aggregate != nil:
			aggregates++
			if aggregates > 1 {
				v.add(sp+".aggregate", "a pipeline has at most one aggregate step")
			}
			a := *st.Aggregate
			v.aggregate(sp+".aggregate", &a)
			steps[i].Aggregate = &a
		default:
			v.add(sp, "a step needs filter or transform (a script path), or aggregate")
		}
	}
	p.Steps = steps
	v.c.Pipelines[name] = p
}

// aggregate checks an aggregate step and resolves its script's path.
func (v *validator) aggregate(path string, a *Aggregate) {
	if _, err := aggregate.ParsePath(a.Key); err != nil {
		v.add(path+".key", "%s", err.Error())
	}
	if a.Window <= 0 {
		v.add(path+".window", "required: a positive duration, like 1m")
	}
	if a.MaxEvents < 0 || a.MaxEvents > aggregate.MaxMaxEvents {
		v.add(path+".max_events", "must be between 1 and %d (0 or left out: %d)", aggregate.MaxMaxEvents, aggregate.DefaultMaxEvents)
	}
	if a.MaxKeys < 0 {
		v.add(path+".max_keys", "must be a positive number of windows (0 or left out: %d)", aggregate.DefaultMaxKeys)
	}
	if a.Script != "" {
		a.Script = v.script(path+".script", a.Script)
	}
}

// refs checks that a pipeline's from or to list names existing components.
func (v *validator) refs(path string, names []string, kind string, known []string) {
	if len(names) == 0 {
		v.add(path, "must name at least one %s (defined: %s)", kind, orNone(known))
		return
	}
	seen := map[string]bool{}
	for i, n := range names {
		ip := fmt.Sprintf("%s[%d]", path, i)
		switch {
		case seen[n]:
			v.add(ip, "%s %q is listed twice", kind, n)
		case !slices.Contains(known, n):
			v.add(ip, "unknown %s %q (defined %ss: %s)", kind, n, kind, orNone(known))
		}
		seen[n] = true
	}
}

// script checks a script file and returns its absolute path.
func (v *validator) script(path, file string) string {
	abs := v.resolve(file)
	err, done := v.scripts[abs]
	if !done {
		st, statErr := os.Stat(abs)
		switch {
		case statErr != nil:
			err = fmt.Errorf("script %s not found (looked at %s)", file, abs)
		case st.IsDir():
			err = fmt.Errorf("%s is a directory, not a script", abs)
		case v.chk.Script != nil:
			err = v.chk.Script(abs)
		}
		v.scripts[abs] = err
	}
	if err != nil {
		v.add(path, "%s", err.Error())
	}
	return abs
}

func validNamespace(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// operationalEvents checks the operational_events block: a source name of
// its own (not one under sources, which would let anyone who can send to
// that source forge operational events) that some pipeline reads.
func (v *validator) operationalEvents() {
	o := v.c.OperationalEvents
	if o.FailingAfter < 1 {
		v.add("operational_events.failing_after", "must be at least 1 (failed attempts in a row), got %d", o.FailingAfter)
	}
	if o.Source == "" {
		return
	}
	const key = "operational_events.source"
	if !validName.MatchString(o.Source) {
		v.add(key, "%q: use letters, digits, - and _, starting with a letter or digit", o.Source)
		return
	}
	if _, ok := v.c.Sources[o.Source]; ok {
		v.add(key, "%q is also declared under sources: the operational events' source is hookbus' own and is not declared there "+
			"(remove sources.%s, or name another source here)", o.Source, o.Source)
		return
	}
	for _, p := range v.c.Pipelines {
		if slices.Contains(p.From, o.Source) {
			return
		}
	}
	v.add(key, "no pipeline reads %q: add one with `from: [%s]` and the sinks the operational events go to", o.Source, o.Source)
}

// console checks the console block: a public URL that portal links can
// start with, a session key long enough to seal cookies, lifetimes within
// their bounds and frame ancestors that are origins.
func (v *validator) console() {
	c := v.c.Console
	if c.PublicURL != "" {
		if msg := checkPublicURL(c.PublicURL); msg != "" {
			v.add("console.public_url", "%s", msg)
		}
	}
	if c.SessionTTL <= 0 {
		v.add("console.session_ttl", "must be a positive duration, like 12h")
	}
	if c.SessionKey != "" && len(c.SessionKey) < MinSessionKey {
		v.add("console.session_key", "must be at least %d characters (got %d); `openssl rand -base64 32` makes one, or leave it empty for a random key per process",
			MinSessionKey, len(c.SessionKey))
	}
	if ttl := c.Portal.LinkTTL; ttl < subscription.PortalLinkMinTTL || ttl > subscription.PortalLinkMaxTTL {
		v.add("console.portal.link_ttl", "must be from 1m to 24h, got %s", ttl)
	}
	for i, o := range c.Portal.FrameAncestors {
		if msg := checkFrameAncestor(o); msg != "" {
			v.add(fmt.Sprintf("console.portal.frame_ancestors[%d]", i), "%s", msg)
		}
	}
}

// checkPublicURL returns what is wrong with console.public_url, or "".
func checkPublicURL(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return fmt.Sprintf("%q is not a URL: %v", raw, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Sprintf("%q must be an http or https URL, like https://hooks.example.com", raw)
	case u.Host == "":
		return fmt.Sprintf("%q has no host", raw)
	case u.User != nil:
		return fmt.Sprintf("%q must not carry user info", raw)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(raw, "#"):
		return fmt.Sprintf("%q must have no query or fragment: portal links add their own", raw)
	}
	return ""
}

// checkFrameAncestor returns what is wrong with one entry of
// console.portal.frame_ancestors, or "": it must be "'self'" or an origin,
// scheme://host[:port] with no path, so it cannot widen the CSP directive
// it goes into (no spaces, semicolons, commas or wildcards).
func checkFrameAncestor(o string) string {
	if o == "'self'" {
		return ""
	}
	const want = "must be an origin (scheme://host[:port], like https://dev.example.com) or 'self'"
	if strings.ContainsAny(o, " \t;,*'\"") {
		return fmt.Sprintf("%q %s", o, want)
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(o, "#") {
		return fmt.Sprintf("%q %s", o, want)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Sprintf("%q: port must be a number from 1 to 65535", o)
		}
	}
	return ""
}
