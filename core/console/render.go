package console

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
	"unicode/utf8"
)

//go:embed templates static
var assets embed.FS

// page is what every template gets.
type page struct {
	// Title is the page's heading and title.
	Title string
	// Nav names the menu entry to mark as current.
	Nav string
	// Portal is set in the application portal; App is its application.
	Portal bool
	App    string
	// Base is "/console" or "/portal"; AppBase the root of App's pages.
	Base, AppBase string
	// CSRF goes into every form.
	CSRF string
	// SignedIn shows the menu and the sign-out button.
	SignedIn bool
	// Flash is the message a redirect left; Error an error to show.
	Flash, Error string
	// Fields are the API's validation messages by field.
	Fields map[string]string
	// Data is the page's own.
	Data any
}

// templates holds one template set per page: the layout, the shared
// partials and the page.
var templates = map[string]*template.Template{}

var funcs = template.FuncMap{
	"time":    timeTag,
	"ms":      formatMS,
	"pct":     formatPct,
	"json":    prettyJSON,
	"spark":   sparkline,
	"query":   queryString,
	"join":    strings.Join,
	"has":     func(m map[string]string, k string) bool { _, ok := m[k]; return ok },
	"escpath": url.PathEscape,
	"mask":    maskHeader,
	"trunc": func(n int, s string) string {
		if len(s) <= n {
			return s
		}
		// Cut at a character's start, not inside one.
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		return s[:n] + "…"
	},
}

func init() {
	pages, err := fs.Glob(assets, "templates/page_*.html")
	if err != nil {
		panic(err)
	}
	for _, p := range pages {
		name := strings.TrimSuffix(strings.TrimPrefix(path.Base(p), "page_"), ".html")
		t := template.Must(template.New(name).Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/part_*.html", p))
		templates[name] = t
	}
}

// render writes page name with status 200.
func (rq *request) render(name string, p page) { rq.renderStatus(http.StatusOK, name, p) }

// renderStatus fills what every page has and writes the page. It renders
// into a buffer first: a template error never leaves half a page.
func (rq *request) renderStatus(code int, name string, p page) {
	p.Portal, p.App, p.CSRF, p.Base, p.SignedIn = rq.portal, rq.app, rq.sess.CSRF, rq.base(), true
	if p.AppBase == "" {
		p.AppBase = rq.appBase(rq.app)
	}
	if p.Flash == "" && rq.r.Method == http.MethodGet {
		p.Flash = rq.takeFlash()
	}
	rq.c.write(rq.w, code, name, p)
}

// write renders page name into w.
func (c *Console) write(w http.ResponseWriter, code int, name string, p page) {
	t, ok := templates[name]
	if !ok {
		c.opts.Logger.Error("console: no such page template", "page", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", p); err != nil {
		c.opts.Logger.Error("console: render", "page", name, "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// timeTag shows an RFC 3339 time: UTC in the page, the viewer's local time
// once the script has run, and UTC on hover.
func timeTag(v any) template.HTML {
	var t time.Time
	switch x := v.(type) {
	case time.Time:
		t = x
	case string:
		if x == "" {
			return ""
		}
		var err error
		if t, err = time.Parse(time.RFC3339Nano, x); err != nil {
			return template.HTML(template.HTMLEscapeString(x))
		}
	case *string:
		if x == nil {
			return "–"
		}
		return timeTag(*x)
	default:
		return ""
	}
	if t.IsZero() {
		return "–"
	}
	u := t.UTC()
	return template.HTML(fmt.Sprintf(`<time datetime="%s" title="%s UTC">%s UTC</time>`,
		u.Format(time.RFC3339Nano), u.Format("2006-01-02 15:04:05.000"), u.Format("2006-01-02 15:04:05")))
}

// formatMS shows a duration in milliseconds, as the API gives them.
func formatMS(ms float64) string {
	switch {
	case ms <= 0:
		return "–"
	case ms < 10:
		return fmt.Sprintf("%.1f ms", ms)
	case ms < 10000:
		return fmt.Sprintf("%.0f ms", ms)
	default:
		return fmt.Sprintf("%.1f s", ms/1000)
	}
}

// formatPct shows a share 0..1 as a percentage.
func formatPct(f float64) string { return fmt.Sprintf("%.1f%%", f*100) }

// prettyJSON indents a JSON value for a <pre>.
func prettyJSON(v any) string {
	if raw, ok := v.(json.RawMessage); ok {
		var buf bytes.Buffer
		if json.Indent(&buf, raw, "", "  ") == nil {
			return buf.String()
		}
		return string(raw)
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// queryString builds "?k=v&…" from pairs, leaving out empty values.
func queryString(kv ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			q.Set(kv[i], kv[i+1])
		}
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

// serveStatic serves the embedded script and style sheet.
func (c *Console) serveStatic(prefix string) http.Handler {
	sub, err := fs.Sub(assets, "static")
	if err != nil {
		panic(err)
	}
	files := http.StripPrefix(prefix, http.FileServer(http.FS(sub)))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=300")
		files.ServeHTTP(w, r)
	})
}
