// Command crdtrim is a step of make manifests: it removes the field
// descriptions inside the SandboxSet CRD's embedded Kubernetes types (the
// Pod template, and the NetworkPolicy rules of spec.network), and keeps
// the descriptions of the SandboxSet's own fields, so that kubectl explain
// documents them while the CRD stays small enough for a client-side
// kubectl apply (its last-applied annotation is limited to 256 KiB). The
// embedded types' fields are documented by kubectl explain pod and
// kubectl explain networkpolicy.
//
//	go run ./cmd/crdtrim config/crd/bases/agents.kruise.io_sandboxsets.yaml
package main

import (
	"bytes"
	"fmt"
	"os"

	"sigs.k8s.io/yaml"
)

func main() {
	for _, path := range os.Args[1:] {
		if err := trim(path); err != nil {
			fmt.Fprintln(os.Stderr, "crdtrim:", err)
			os.Exit(1)
		}
	}
}

func trim(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	// controller-gen writes a document separator first.
	body := bytes.TrimPrefix(data, []byte("---\n"))
	crd := map[string]any{}
	if err := yaml.Unmarshal(body, &crd); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	versions, _ := dig(crd, "spec", "versions").([]any)
	if len(versions) == 0 {
		return fmt.Errorf("%s: no spec.versions", path)
	}
	for _, v := range versions {
		template, ok := dig(v, "schema", "openAPIV3Schema", "properties", "spec", "properties", "template", "properties").(map[string]any)
		if !ok {
			return fmt.Errorf("%s: no spec.template in the schema", path)
		}
		for _, field := range template {
			dropDescriptions(field)
		}
		network, ok := dig(v, "schema", "openAPIV3Schema", "properties", "spec", "properties", "network", "properties").(map[string]any)
		if !ok {
			return fmt.Errorf("%s: no spec.network in the schema", path)
		}
		for _, rules := range []string{"ingress", "egress"} {
			items := dig(network, rules, "items")
			if items == nil {
				return fmt.Errorf("%s: no spec.network.%s items in the schema", path, rules)
			}
			dropDescriptions(items)
		}
	}
	out, err := yaml.Marshal(crd)
	if err != nil {
		return err
	}
	return os.WriteFile(path, append([]byte("---\n"), out...), 0o644)
}

// dig walks nested maps by key; nil if any is missing.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// dropDescriptions removes every description below v.
func dropDescriptions(v any) {
	switch v := v.(type) {
	case map[string]any:
		delete(v, "description")
		for _, child := range v {
			dropDescriptions(child)
		}
	case []any:
		for _, child := range v {
			dropDescriptions(child)
		}
	}
}
