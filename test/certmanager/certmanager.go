// Package certmanager runs cert-manager's own controllers in-process against a
// real API server, so suites can rely on real issuance and CA injection
// without a cluster, container images or Helm. It links cert-manager's public
// pkg/ packages and wires them the way its controller and cainjector binaries
// do, minus leader election, metrics, health and profiling servers.
package certmanager

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	cmscheme "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned/scheme"
	"github.com/cert-manager/cert-manager/pkg/controller"
	"github.com/cert-manager/cert-manager/pkg/controller/cainjector"
	"github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	crca "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	crselfsigned "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	"github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	"github.com/cert-manager/cert-manager/pkg/controller/issuers"
	// The issuers controllers find issuer types in a registry these fill.
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

// ClusterResourceNamespace is where ClusterIssuers keep their Secrets (a CA
// ClusterIssuer's key pair); it is the cert-manager binary's default.
const ClusterResourceNamespace = "kube-system"

// controllers are the cert-manager controllers Run starts, by the names they
// register under (each package registers itself when imported). Only the
// SelfSigned and CA issuer types are served: the others need outside services.
var controllers = []string{
	issuers.ControllerName,
	clusterissuers.ControllerName,
	trigger.ControllerName,
	issuing.ControllerName,
	keymanager.ControllerName,
	requestmanager.ControllerName,
	readiness.ControllerName,
	revisionmanager.ControllerName,
	approver.ControllerName,
	crselfsigned.CRControllerName,
	crca.CRControllerName,
}

// workers per controller: a test issues a handful of certificates.
const workers = 2

// Run runs the cert-manager controllers and the CA injector (for validating
// and mutating webhook configurations) until ctx is done, then returns nil,
// or returns the first error that stops any of them. The CRDs must be
// installed (InstallCRDs). cfg needs static credentials (certificates,
// token or basic auth), as envtest's are: cert-manager's controller context
// only loads a kubeconfig file, so Run writes one briefly.
//
// Logs go to the logr.Logger in ctx (logr.NewContext); without one, Run is
// silent. The CA injector's reconcilers log to controller-runtime's global
// logger (ctrl.SetLogger) as cert-manager's code hard-wires it.
func Run(ctx context.Context, cfg *rest.Config) error {
	log := logr.FromContextOrDiscard(ctx)
	ctx = logr.NewContext(ctx, log)
	g, ctx := errgroup.WithContext(ctx)

	factory, err := newContextFactory(ctx, cfg)
	if err != nil {
		return err
	}
	var loops []controllerLoop
	for _, name := range controllers {
		constructor, ok := controller.Known()[name]
		if !ok {
			return fmt.Errorf("cert-manager controller %s is not registered", name)
		}
		loop, err := constructor(factory)
		if err != nil {
			return fmt.Errorf("creating cert-manager controller %s: %w", name, err)
		}
		loops = append(loops, controllerLoop{name, loop})
	}
	injector, err := newInjector(ctx, cfg, log.WithName("cainjector"))
	if err != nil {
		return err
	}

	// The controllers asked the shared informer factories for their
	// informers while being built; only now can the factories start them all.
	shared, err := factory.Build()
	if err != nil {
		return fmt.Errorf("building the cert-manager controller context: %w", err)
	}
	shared.SharedInformerFactory.Start(ctx.Done())
	shared.KubeSharedInformerFactory.Start(ctx.Done())
	defer shared.SharedInformerFactory.Shutdown()
	defer shared.KubeSharedInformerFactory.Shutdown()

	for _, l := range loops {
		g.Go(func() error {
			// A loop stopped before its caches synced reports an error
			// that only matters if nothing asked it to stop.
			if err := l.loop.Run(workers, ctx); err != nil && ctx.Err() == nil {
				return fmt.Errorf("cert-manager controller %s: %w", l.name, err)
			}
			return nil
		})
	}
	g.Go(func() error {
		if err := injector.Start(ctx); err != nil {
			return fmt.Errorf("cert-manager CA injector: %w", err)
		}
		return nil
	})
	return g.Wait()
}

type controllerLoop struct {
	name string
	loop controller.Interface
}

// newContextFactory builds the clients and informer factories the controllers
// share, configured as the cert-manager binary's defaults.
func newContextFactory(ctx context.Context, cfg *rest.Config) (*controller.ContextFactory, error) {
	// NewContextFactory takes a kubeconfig path, not a rest.Config, and reads
	// it once; the file holds credentials, so it lives only until then.
	dir, err := os.MkdirTemp("", "certmanager-")
	if err != nil {
		return nil, fmt.Errorf("creating a directory for the kubeconfig: %w", err)
	}
	defer os.RemoveAll(dir)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(cfg, kubeconfig); err != nil {
		return nil, err
	}
	factory, err := controller.NewContextFactory(ctx, controller.ContextOptions{
		Kubeconfig: kubeconfig,
		// Used only if the API server lacks priority and fairness.
		KubernetesAPIQPS:   50,
		KubernetesAPIBurst: 100,
		IssuerOptions:      controller.IssuerOptions{ClusterResourceNamespace: ClusterResourceNamespace},
		CertificateOptions: controller.CertificateOptions{
			CertificateRequestMinimumBackoffDuration: time.Hour,
			CertificateRequestMaximumBackoffDuration: 32 * time.Hour,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("creating the cert-manager controller context: %w", err)
	}
	return factory, nil
}

// writeKubeconfig writes cfg's server and static credentials as a kubeconfig
// file. Credentials a kubeconfig cannot carry are refused, not dropped.
func writeKubeconfig(cfg *rest.Config, path string) error {
	if cfg.ExecProvider != nil || cfg.AuthProvider != nil || cfg.WrapTransport != nil || cfg.Transport != nil || cfg.Dial != nil || cfg.Proxy != nil {
		return errors.New("certmanager: the rest.Config must use static credentials: exec and auth providers, custom transports, dialers and proxies cannot be passed to cert-manager")
	}
	const name = "certmanager"
	kc := clientcmdapi.NewConfig()
	kc.Clusters[name] = &clientcmdapi.Cluster{
		Server:                   cfg.Host,
		TLSServerName:            cfg.ServerName,
		InsecureSkipTLSVerify:    cfg.Insecure,
		CertificateAuthority:     cfg.CAFile,
		CertificateAuthorityData: cfg.CAData,
	}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{
		ClientCertificate:     cfg.CertFile,
		ClientCertificateData: cfg.CertData,
		ClientKey:             cfg.KeyFile,
		ClientKeyData:         cfg.KeyData,
		Token:                 cfg.BearerToken,
		TokenFile:             cfg.BearerTokenFile,
		Username:              cfg.Username,
		Password:              cfg.Password,
		Impersonate:           cfg.Impersonate.UserName,
		ImpersonateUID:        cfg.Impersonate.UID,
		ImpersonateGroups:     cfg.Impersonate.Groups,
		ImpersonateUserExtra:  cfg.Impersonate.Extra,
	}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	kc.CurrentContext = name
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return fmt.Errorf("writing the kubeconfig for cert-manager: %w", err)
	}
	return nil
}

// newInjector builds the CA injector as cert-manager's cainjector binary
// does, for webhook configurations only, with every listener off.
func newInjector(ctx context.Context, cfg *rest.Config, log logr.Logger) (ctrl.Manager, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("building the CA injector scheme: %w", err)
	}
	if err := cmscheme.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("building the CA injector scheme: %w", err)
	}
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "cert-manager-cainjector"
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Logger:                 log,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// Its controllers are named after the injectable kinds; a second
		// Run in one process must not trip the uniqueness check.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
		// As in cainjector: Secrets are watched by metadata only and read
		// straight from the API server.
		Client: client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}},
	})
	if err != nil {
		return nil, fmt.Errorf("creating the CA injector manager: %w", err)
	}
	err = cainjector.RegisterAllInjectors(ctx, mgr, cainjector.SetupOptions{
		EnableCertificatesDataSource: true,
		EnabledReconcilersFor: map[string]bool{
			cainjector.ValidatingWebhookConfigurationName: true,
			cainjector.MutatingWebhookConfigurationName:   true,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("registering the CA injector: %w", err)
	}
	return mgr, nil
}
