package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/sandboxset/warmpool/certs"
)

// nopWebhookLabel marks the floor's Pods whose writes go through the
// webhook that does nothing.
const nopWebhookLabel = "bench-nop-webhook"

// nopWebhook is a mutating admission webhook that allows every request and
// changes nothing, served by the benchmark on loopback with TLS as the
// manager serves its own. Patches through it are the floor of any warm pool
// that judges its claims in a webhook: the API server's side of the call
// (encoding both Pods, the TLS round trip, waiting for the cores) with no
// work in the handler.
type nopWebhook struct {
	cs     kubernetes.Interface
	name   string
	srv    *http.Server
	dir    string
	served atomic.Int64
}

// startNopWebhook serves the webhook and registers it for Pod creations
// and updates of Pods labelled nopWebhookLabel; close undoes both.
func startNopWebhook(ctx context.Context, cs kubernetes.Interface) (*nopWebhook, error) {
	dir, err := os.MkdirTemp("", "bench-nop-webhook-")
	if err != nil {
		return nil, fmt.Errorf("making a directory for the no-op webhook's certificates: %w", err)
	}
	w := &nopWebhook{cs: cs, dir: dir}
	if err := certs.SelfSigned(dir, nil, []net.IP{net.IPv4(127, 0, 0, 1)}, 24*time.Hour); err != nil {
		w.close()
		return nil, fmt.Errorf("issuing the no-op webhook's certificate: %w", err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, certs.CertName), filepath.Join(dir, certs.KeyName))
	if err != nil {
		w.close()
		return nil, fmt.Errorf("loading the no-op webhook's certificate: %w", err)
	}
	caBundle, err := certs.CABundle(dir)
	if err != nil {
		w.close()
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		w.close()
		return nil, fmt.Errorf("listening for the no-op webhook: %w", err)
	}
	// ServeTLS speaks HTTP/2, as the manager's webhook server does with the
	// API server.
	w.srv = &http.Server{
		Handler:           http.HandlerFunc(w.serve),
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS13},
	}
	go func() {
		if err := w.srv.ServeTLS(l, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logf("warning: the no-op webhook stopped: %v", err)
		}
	}()

	url := fmt.Sprintf("https://%s/mutate", l.Addr())
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "bench-nop-"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "nop.bench.agents.kruise.io",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: caBundle},
			ObjectSelector:          &metav1.LabelSelector{MatchLabels: map[string]string{nopWebhookLabel: "true"}},
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			TimeoutSeconds:          ptr.To(int32(5)),
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
				Rule: admissionregistrationv1.Rule{
					APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"},
				},
			}},
		}},
	}
	created, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, cfg, metav1.CreateOptions{})
	if err != nil {
		w.close()
		return nil, fmt.Errorf("registering the no-op webhook: %w", err)
	}
	w.name = created.Name
	return w, nil
}

// serve answers every review with allowed and no patch, reading the whole
// request as any webhook must.
func (w *nopWebhook) serve(rw http.ResponseWriter, r *http.Request) {
	var review struct {
		Request struct {
			UID string `json:"uid"`
		} `json:"request"`
	}
	if err := json.NewDecoder(r.Body).Decode(&review); err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	w.served.Add(1)
	rw.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(rw, `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":%q,"allowed":true}}`, review.Request.UID)
}

// calls is how many reviews the webhook has answered.
func (w *nopWebhook) calls() int64 { return w.served.Load() }

func (w *nopWebhook) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if w.name != "" {
		if err := w.cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, w.name, metav1.DeleteOptions{}); err != nil {
			logf("warning: deleting the no-op webhook's configuration %s: %v", w.name, err)
		}
	}
	if w.srv != nil {
		_ = w.srv.Shutdown(ctx)
	}
	_ = os.RemoveAll(w.dir)
}
