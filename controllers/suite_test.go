package controllers

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// Shared waits: Eventually for what must come about, Consistently for what
// must stay so.
const (
	timeout  = 30 * time.Second
	interval = 50 * time.Millisecond
	holdFor  = 2 * time.Second
)

var (
	testEnv     *envtest.Environment
	cfg         *rest.Config
	k8sClient   client.WithWatch // direct to the API server, never the manager's cache
	scheme      = runtime.NewScheme()
	stopManager func()
)

func TestControllers(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "SandboxSet controller suite")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true), zap.Level(zap.Options{}.Level)))
	Expect(os.Getenv("KUBEBUILDER_ASSETS")).NotTo(BeEmpty(), "KUBEBUILDER_ASSETS is unset: run the tests with 'make test', which builds kube-apiserver and etcd")
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(agentsv1alpha1.AddToScheme(scheme))

	testEnv = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	var err error
	cfg, err = testEnv.Start()
	Expect(err).NotTo(HaveOccurred())
	cfg.QPS, cfg.Burst = 1000, 2000
	k8sClient, err = client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	stopManager = startManager()
})

var _ = AfterSuite(func() {
	if stopManager != nil {
		stopManager()
	}
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})

// tuneManager restarts the manager with tune for the rest of the spec, and
// with the defaults after it.
func tuneManager(tune func(*Options)) {
	stopManager()
	stopManager = startManager(tune)
	DeferCleanup(func() {
		stopManager()
		stopManager = startManager()
	})
}

// startManager runs the controller the way cmd/manager does, and returns a
// function that stops it and waits until it has stopped.
func startManager(tune ...func(*Options)) func() {
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Cache:                  CacheOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// A restarted manager registers the same controller name again.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	r := &SandboxSetReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("sandboxset-controller"),
		Options:   Options{Workers: 8, PodWriteParallelism: 64, ExpectationTTL: 2 * time.Minute},
	}
	for _, t := range tune {
		t(&r.Options)
	}
	Expect(r.SetupWithManager(ctx, mgr)).To(Succeed())
	expiry := &ExpiryReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("sandbox-expiry-controller")}
	Expect(expiry.SetupWithManager(mgr, 4)).To(Succeed())
	blocked, err := ParseCIDRs(DefaultBlockedCIDRs)
	Expect(err).NotTo(HaveOccurred())
	network := &NetworkPolicyReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("sandboxset-network-controller"), BlockedCIDRs: blocked}
	Expect(network.SetupWithManager(ctx, mgr, 4)).To(Succeed())
	done := make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(done)
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
	return func() {
		cancel()
		<-done
	}
}

// newNamespace creates a namespace for one spec, so specs never see each
// other's Pods. envtest has no namespace controller, so it is left behind.
func newNamespace(ctx context.Context) string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "sbs-test-"}}
	Expect(k8sClient.Create(ctx, ns)).To(Succeed())
	return ns.Name
}
