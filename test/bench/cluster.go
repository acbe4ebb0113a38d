package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// cluster is the benchmark's own local kwok cluster, run by
// test/local/cluster.sh under a name and ports that clash with neither
// `make up` nor the e2e suite.
type cluster struct {
	repo    string
	name    string
	env     []string
	cache   string // $SANDBOXSET_CACHE or its default
	started bool   // this run brought it up, so this run takes it down
	// managerMetrics is where the manager serves its metrics.
	managerMetrics string
}

// The manager's ports: apart from `make up` (9443, 8080, 8081) and the e2e
// suite (19443, 18080, 18081), so all three can run at once.
const metricsPort = "28080"

func newCluster(repo string, p params) *cluster {
	readyMS := strconv.FormatInt(p.ReadyDelay.Milliseconds(), 10)
	env := []string{
		"CLUSTER_NAME=" + p.ClusterName,
		"NODES=" + strconv.Itoa(p.Nodes),
		// Equal delay and jitter make the Ready delay fixed, so the floor's
		// "+ ready delay" term is exact.
		"READY_DELAY_MS=" + readyMS, "READY_JITTER_MS=" + readyMS,
		"WEBHOOK_PORT=29443", "METRICS_PORT=" + metricsPort, "PROBE_PORT=28081",
		"DISABLE_QPS_LIMITS=" + strconv.FormatBool(p.Profile == profileNoQPS),
	}
	if p.ManagerMemoryLimitMiB > 0 {
		env = append(env, "MANAGER_MEMORY_LIMIT_MIB="+strconv.Itoa(p.ManagerMemoryLimitMiB))
	}
	cache := os.Getenv("SANDBOXSET_CACHE")
	if cache == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, _ := os.UserHomeDir()
			base = filepath.Join(home, ".cache")
		}
		cache = filepath.Join(base, "sandboxset")
	}
	return &cluster{repo: repo, name: p.ClusterName, env: env, cache: cache, managerMetrics: "127.0.0.1:" + metricsPort}
}

// script runs cluster.sh with the benchmark's settings. Its log goes to our
// stderr; only `env` has output we read.
func (c *cluster) script(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.repo, "test", "local", "cluster.sh"), args...)
	cmd.Env = append(os.Environ(), c.env...)
	cmd.Dir = c.repo
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	// A cancelled run must still get to `down`: give the script a moment to
	// stop on SIGINT-like cancellation rather than leave half a cluster.
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("test/local/cluster.sh %s: %w", strings.Join(args, " "), err)
	}
	return out.String(), nil
}

// up brings the cluster up, trying twice: cluster.sh's `kubectl wait` on
// the new CRD can fail when it runs before the CRD has any condition, and
// `up` starts from `down`, so a second try starts clean.
func (c *cluster) up(ctx context.Context) error {
	c.started = true // even a failed `up` may leave processes for `down`
	_, err := c.script(ctx, "up")
	if err != nil && ctx.Err() == nil {
		logf("warning: %v; trying once more", err)
		_, err = c.script(ctx, "up")
	}
	return err
}

// down removes the cluster. It runs on its own context so that it still
// works after the run's context was cancelled by a signal or the timeout.
func (c *cluster) down() error {
	if !c.started {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err := c.script(ctx, "down")
	return err
}

// kubeconfig is the admin kubeconfig cluster.sh wrote.
func (c *cluster) kubeconfig(ctx context.Context) (string, error) {
	out, err := c.script(ctx, "env")
	if err != nil {
		return "", err
	}
	path, ok := strings.CutPrefix(strings.TrimSpace(out), "export KUBECONFIG=")
	if !ok {
		return "", fmt.Errorf("cluster.sh env printed %q, want export KUBECONFIG=...", out)
	}
	return path, nil
}

// Processes whose cost the benchmark reports.
const (
	procManager   = "manager"
	procKCM       = "kube-controller-manager"
	procAPIServer = "kube-apiserver"
	procEtcd      = "etcd"
	procScheduler = "kube-scheduler"
	procKwok      = "kwok-controller"
)

var components = []string{procManager, procKCM, procAPIServer, procEtcd, procScheduler, procKwok}

// pid reads a component's pid: the manager's from cluster.sh's state
// directory, the control plane's from kwokctl's cluster directory.
func (c *cluster) pid(component string) (int, error) {
	path := filepath.Join(c.cache, "kwok", "clusters", c.name, "pids", component+".pid")
	if component == procManager {
		path = filepath.Join(c.cache, "local", c.name, "manager.pid")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("reading the %s pid: %w", component, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0, fmt.Errorf("parsing the %s pid in %s: %w", component, path, err)
	}
	return pid, nil
}

// pids maps every component to its pid, leaving out those not found.
func (c *cluster) pids() map[string]int {
	out := map[string]int{}
	for _, comp := range components {
		if pid, err := c.pid(comp); err == nil {
			out[comp] = pid
		} else {
			logf("warning: %v; its cost is not reported", err)
		}
	}
	return out
}

// scaleNodes changes the number of simulated nodes, for -rss10k, which needs
// more than the default 40 × 110 Pods of room.
func (c *cluster) scaleNodes(ctx context.Context, nodes int) error {
	_, err := c.script(ctx, "kwokctl", "scale", "node", "--replicas", strconv.Itoa(nodes))
	return err
}

// removeFlowControl deletes what config/flowcontrol installed, so that the
// manager's Pod writes fall back to the stock service-accounts flow schema,
// beside the agents' claims.
func removeFlowControl(ctx context.Context, cs kubernetes.Interface) error {
	const name = "sandboxset-refill"
	if err := cs.FlowcontrolV1().FlowSchemas().Delete(ctx, name, metav1.DeleteOptions{}); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting FlowSchema %s: %w", name, err)
	}
	if err := cs.FlowcontrolV1().PriorityLevelConfigurations().Delete(ctx, name, metav1.DeleteOptions{}); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting PriorityLevelConfiguration %s: %w", name, err)
	}
	return nil
}
