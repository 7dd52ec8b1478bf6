// promqlparse parses PromQL with the parser of Prometheus 3 (the module the collector build
// already pins), which accepts the UTF-8 syntax SigNoz uses for OpenTelemetry names:
// {"http_request_duration_seconds.bucket", "service.name"="trader-api"}. Debian's
// Prometheus 2.42 rejects that syntax, so SigNoz expressions are checked here.
//
// stdin:  a JSON array of expressions.
// stdout: a JSON array, one object per expression, in order:
//
//	{"error": "..."}                        when it does not parse, or
//	{"selectors": [{"text": "...", "name": "...", "matchers": [{"name","type","value"}]}]}
//
// "selectors" lists every vector selector (also those under a range or subquery), so a test
// can check that each one matches stored series.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

type matcher struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Value string `json:"value"`
}

type selector struct {
	Text     string    `json:"text"`
	Name     string    `json:"name"`
	Matchers []matcher `json:"matchers"`
}

type result struct {
	Error     string     `json:"error,omitempty"`
	Selectors []selector `json:"selectors,omitempty"`
}

func main() {
	var exprs []string
	if err := json.NewDecoder(os.Stdin).Decode(&exprs); err != nil {
		fmt.Fprintln(os.Stderr, "promqlparse: stdin must be a JSON array of strings:", err)
		os.Exit(2)
	}
	out := make([]result, 0, len(exprs))
	for _, e := range exprs {
		expr, err := parser.ParseExpr(e)
		if err != nil {
			out = append(out, result{Error: err.Error()})
			continue
		}
		r := result{Selectors: []selector{}}
		for _, vs := range parser.ExtractSelectors(expr) {
			s := selector{Matchers: []matcher{}}
			for _, m := range vs {
				if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
					s.Name = m.Value
				}
				s.Matchers = append(s.Matchers, matcher{Name: m.Name, Type: m.Type.String(), Value: m.Value})
			}
			s.Text = (&parser.VectorSelector{LabelMatchers: vs}).String()
			r.Selectors = append(r.Selectors, s)
		}
		out = append(out, r)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "promqlparse:", err)
		os.Exit(1)
	}
}
