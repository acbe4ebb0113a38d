package certmanager

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// modulePath is the module whose CRDs are installed and whose controllers Run
// links in; both come from the version go.mod selects, so they always match.
const modulePath = "github.com/cert-manager/cert-manager"

// InstallCRDs creates or updates every CRD in cert-manager's deploy/crds,
// read from the module cache rather than copied into this repository, and
// waits until the API server has established them.
func InstallCRDs(ctx context.Context, cfg *rest.Config) error {
	dir, err := moduleDir(ctx)
	if err != nil {
		return err
	}
	crds, err := readCRDs(filepath.Join(dir, "deploy", "crds"))
	if err != nil {
		return err
	}
	scheme := runtime.NewScheme()
	if err := apiextensionsv1.AddToScheme(scheme); err != nil {
		return fmt.Errorf("building the CRD scheme: %w", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("creating a client for the CRDs: %w", err)
	}
	for _, crd := range crds {
		if err := createOrUpdate(ctx, c, crd); err != nil {
			return err
		}
	}
	return waitEstablished(ctx, c, crds)
}

// moduleDir asks the go command where the selected cert-manager version lives:
// the module cache path depends on GOMODCACHE and the version in go.mod.
func moduleDir(ctx context.Context) (string, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", modulePath)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("locating module %s with 'go list -m' (run from inside this repository): %w: %s", modulePath, err, strings.TrimSpace(stderr.String()))
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", fmt.Errorf("module %s is not downloaded: run 'go mod download %s'", modulePath, modulePath)
	}
	return dir, nil
}

// readCRDs decodes every CustomResourceDefinition in the directory's YAML
// files. Strict decoding makes a CRD field our apiextensions version does not
// know fail loudly instead of being dropped on the way to the API server.
func readCRDs(dir string) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no CRD files in %s", dir)
	}
	var crds []*apiextensionsv1.CustomResourceDefinition
	for _, file := range files {
		docs, err := yamlDocuments(file)
		if err != nil {
			return nil, err
		}
		for _, doc := range docs {
			// deploy/crds holds plain controller-gen output; the Helm chart
			// keeps its templated copies elsewhere. Say so if that changes.
			if bytes.Contains(doc, []byte("{{")) {
				return nil, fmt.Errorf("%s looks like a Helm template, which InstallCRDs does not render", file)
			}
			crd := &apiextensionsv1.CustomResourceDefinition{}
			if err := yaml.UnmarshalStrict(doc, crd); err != nil {
				return nil, fmt.Errorf("decoding %s: %w", file, err)
			}
			if crd.Kind == "CustomResourceDefinition" {
				crds = append(crds, crd)
			}
		}
	}
	return crds, nil
}

// yamlDocuments splits a multi-document YAML file, dropping empty documents.
func yamlDocuments(file string) ([][]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	reader := utilyaml.NewYAMLReader(bufio.NewReader(f))
	var docs [][]byte
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", file, err)
		}
		if len(bytes.TrimSpace(doc)) > 0 {
			docs = append(docs, doc)
		}
	}
}

// createOrUpdate makes the CRD on the server match the file, so a second
// install (another suite, a newer cert-manager) converges instead of failing.
func createOrUpdate(ctx context.Context, c client.Client, crd *apiextensionsv1.CustomResourceDefinition) error {
	err := c.Create(ctx, crd.DeepCopy())
	if !apierrors.IsAlreadyExists(err) {
		if err != nil {
			return fmt.Errorf("creating CRD %s: %w", crd.Name, err)
		}
		return nil
	}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		existing := &apiextensionsv1.CustomResourceDefinition{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(crd), existing); err != nil {
			return err
		}
		existing.Spec = crd.Spec
		return c.Update(ctx, existing)
	})
	if err != nil {
		return fmt.Errorf("updating CRD %s: %w", crd.Name, err)
	}
	return nil
}

// waitEstablished waits until the API server serves every CRD; objects
// created before that are refused.
func waitEstablished(ctx context.Context, c client.Client, crds []*apiextensionsv1.CustomResourceDefinition) error {
	var pending string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, crd := range crds {
			got := &apiextensionsv1.CustomResourceDefinition{}
			if err := c.Get(ctx, client.ObjectKeyFromObject(crd), got); err != nil {
				return false, fmt.Errorf("reading CRD %s: %w", crd.Name, err)
			}
			if !established(got) {
				pending = crd.Name
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for CRD %s to be established: %w", pending, err)
	}
	return nil
}

func established(crd *apiextensionsv1.CustomResourceDefinition) bool {
	for _, cond := range crd.Status.Conditions {
		if cond.Type == apiextensionsv1.Established {
			return cond.Status == apiextensionsv1.ConditionTrue
		}
	}
	return false
}
