package console

import (
	"fmt"
	"html/template"
	"math"
	"strings"
)

// Chart sizes, in SVG user units (the style sheet scales them).
const (
	chartW = 240
	chartH = 48
)

// sparkline draws values (oldest first) as a small SVG line chart, with
// label as its accessible name. It is drawn on the server: no script, and
// nothing but numbers and an escaped label goes into the markup.
func sparkline(values []float64, label string) template.HTML {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="spark" viewBox="0 0 %d %d" role="img" aria-label="%s" preserveAspectRatio="none">`,
		chartW, chartH, template.HTMLEscapeString(label))
	fmt.Fprintf(&b, `<title>%s</title>`, template.HTMLEscapeString(label))
	if len(values) == 0 {
		b.WriteString(`</svg>`)
		return template.HTML(b.String())
	}
	hi := 0.0
	for _, v := range values {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			hi = max(hi, v)
		}
	}
	if hi == 0 {
		hi = 1
	}
	step := float64(chartW)
	if len(values) > 1 {
		step = float64(chartW) / float64(len(values)-1)
	}
	b.WriteString(`<polyline class="spark-line" fill="none" points="`)
	for i, v := range values {
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			v = 0
		}
		y := float64(chartH-2) - v/hi*float64(chartH-4)
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%.1f,%.1f", float64(i)*step, y)
	}
	b.WriteString(`"/></svg>`)
	return template.HTML(b.String())
}
