package main

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

func TestCheckIdentity(t *testing.T) {
	for _, tc := range []struct {
		username    string
		anyIdentity bool
		wantErr     string
	}{
		{username: "system:serviceaccount:sandboxset-system:sandboxset-controller-manager"},
		{username: "kubernetes-admin", wantErr: `the manager runs as "kubernetes-admin", which is not a ServiceAccount`},
		{username: "system:serviceaccountx", wantErr: "--allow-non-serviceaccount-identity"},
		{username: "kubernetes-admin", anyIdentity: true},
	} {
		err := checkIdentity(tc.username, tc.anyIdentity)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("checkIdentity(%q, %v) = %v, want nil", tc.username, tc.anyIdentity, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("checkIdentity(%q, %v) = %v, want an error containing %q", tc.username, tc.anyIdentity, err, tc.wantErr)
		}
	}
}

func TestValidateAdmissionParams(t *testing.T) {
	o := options{admissionParams: "sandboxset-system"}
	o.controller.Workers, o.controller.PodWriteParallelism, o.controller.ExpectationTTL = 1, 1, 1
	if err := o.validate(); err == nil || !strings.Contains(err.Error(), `--admission-params: "sandboxset-system" is not namespace/name`) {
		t.Errorf("validate() = %v, want the --admission-params refusal", err)
	}
	o.admissionParams = "sandboxset-system/sandboxset-admission-params"
	if err := o.validate(); err != nil {
		t.Errorf("validate() = %v, want nil", err)
	}
}

// TestRestConfigAsksForNoGzip: the manager's client does not ask the API
// server to compress, where a client with the defaults does. The server
// serves TLS, as an API server does: client-go's plain-HTTP transport
// ignores the setting.
func TestRestConfigAsksForNoGzip(t *testing.T) {
	encodings := make(chan string, 2)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		encodings <- r.Header.Get("Accept-Encoding")
	}))
	defer srv.Close()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	err := clientcmd.WriteToFile(clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"c": {Server: srv.URL, CertificateAuthorityData: ca}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"u": {Token: "t"}},
		Contexts:       map[string]*clientcmdapi.Context{"c": {Cluster: "c", AuthInfo: "u"}},
		CurrentContext: "c",
	}, kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", kubeconfig)

	cfg, err := restConfig(options{qps: 5, burst: 10})
	if err != nil {
		t.Fatalf("restConfig: %v", err)
	}
	if cfg.QPS != 5 || cfg.Burst != 10 {
		t.Errorf("QPS, burst = %v, %d; want 5, 10", cfg.QPS, cfg.Burst)
	}
	defaults := rest.CopyConfig(cfg)
	defaults.DisableCompression = false
	for _, tc := range []struct {
		name string
		cfg  *rest.Config
		want string
	}{
		{"the manager's", cfg, ""},
		{"the defaults", defaults, "gzip"},
	} {
		client, err := rest.HTTPClientFor(tc.cfg)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		resp, err := client.Get(srv.URL + "/api")
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		resp.Body.Close()
		if got := <-encodings; got != tc.want {
			t.Errorf("%s client sent Accept-Encoding %q, want %q", tc.name, got, tc.want)
		}
	}
}
