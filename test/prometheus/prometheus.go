// Package prometheus reads the operator's alerting rules
// (config/prometheus/rules.yaml) and Grafana dashboard
// (config/grafana/sandboxset.json), for the tests that run the rules through
// promtool and check every expression against a live manager's metrics.
package prometheus

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"
)

// Paths of the rules and the dashboard, from the repository's root.
var (
	RulesPath     = filepath.Join("config", "prometheus", "rules.yaml")
	RulesTestPath = filepath.Join("config", "prometheus", "rules_test.yaml")
	DashboardPath = filepath.Join("config", "grafana", "sandboxset.json")
)

// ScrapeMetrics are the series Prometheus makes itself at each scrape: no
// manager exports them.
var ScrapeMetrics = map[string]bool{"up": true}

type ruleGroups struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert string `json:"alert"`
			Expr  string `json:"expr"`
		} `json:"rules"`
	} `json:"groups"`
}

type dashboard struct {
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

// RulesFile returns the PrometheusRule's spec as a plain Prometheus rules
// file, which is what promtool reads.
func RulesFile(root string) ([]byte, error) {
	data, err := os.ReadFile(filepath.Join(root, RulesPath))
	if err != nil {
		return nil, fmt.Errorf("reading the rules: %w", err)
	}
	var rule struct {
		Spec json.RawMessage `json:"spec"`
	}
	if err := yaml.Unmarshal(data, &rule); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", RulesPath, err)
	}
	out, err := yaml.JSONToYAML(rule.Spec)
	if err != nil {
		return nil, fmt.Errorf("encoding the rules file: %w", err)
	}
	return out, nil
}

// Expressions returns every PromQL expression in the rules and the
// dashboard, keyed by where it is, e.g. "alert SandboxSetPoolEmpty" or
// "panel Claims per second".
func Expressions(root string) (map[string]string, error) {
	exprs := map[string]string{}
	data, err := RulesFile(root)
	if err != nil {
		return nil, err
	}
	var rules ruleGroups
	if err := yaml.Unmarshal(data, &rules); err != nil {
		return nil, fmt.Errorf("decoding the rules: %w", err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs["alert "+r.Alert] = r.Expr
		}
	}

	data, err = os.ReadFile(filepath.Join(root, DashboardPath))
	if err != nil {
		return nil, fmt.Errorf("reading the dashboard: %w", err)
	}
	var dash dashboard
	if err := json.Unmarshal(data, &dash); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", DashboardPath, err)
	}
	for _, p := range dash.Panels {
		for i, t := range p.Targets {
			exprs[fmt.Sprintf("panel %q target %d", p.Title, i)] = t.Expr
		}
	}
	for _, v := range dash.Templating.List {
		if q, ok := v.Query.(string); ok && strings.HasPrefix(q, "label_values(") {
			// label_values(<selector>, <label>) is Grafana's, not PromQL:
			// its selector is.
			selector := strings.TrimSuffix(strings.TrimPrefix(q, "label_values("), ")")
			exprs["variable "+v.Name] = selector[:strings.LastIndex(selector, ",")]
		}
	}
	return exprs, nil
}

// grafanaVariables stand in for the dashboard's variables, so that its
// expressions parse as PromQL.
var grafanaVariables = strings.NewReplacer("$__rate_interval", "5m", "$namespace", ".*", "$sandboxset", ".*")

// MetricNames parses an expression and returns the metric names it reads.
func MetricNames(expr string) ([]string, error) {
	parsed, err := parser.ParseExpr(grafanaVariables.Replace(expr))
	if err != nil {
		return nil, fmt.Errorf("parsing %q: %w", expr, err)
	}
	var names []string
	parser.Inspect(parsed, func(node parser.Node, _ []parser.Node) error {
		if vs, ok := node.(*parser.VectorSelector); ok {
			names = append(names, vs.Name)
		}
		return nil
	})
	return names, nil
}
