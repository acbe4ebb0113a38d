package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sandboxset/warmpool/api/claim"
	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

var scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(agentsv1alpha1.AddToScheme(scheme))
}

// run runs the command line args (without the program name), writing
// results to stdout and notes to stderr, as kubectl does.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := newRootCommand()
	root.SetOut(stdout)
	root.SetErr(stderr)
	if args == nil {
		args = []string{} // cobra would read os.Args otherwise
	}
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "kubectl-sbs",
		Short: "Claim and release sandboxes from SandboxSet warm pools",
		Long: `kubectl sbs claims ready sandboxes from SandboxSet warm pools for agents,
shows who holds what, renews and releases them.

A claim is one label patch on an available sandbox Pod, which the operator's
admission webhook makes atomic; the pool refills at once. Run as a kubectl
plugin (kubectl-sbs on your PATH, e.g. make install-plugin) or directly.

It reads kubectl's configuration (KUBECONFIG, --kubeconfig, --context,
-n/--namespace; the other kubectl connection flags work too). As a plugin,
put those flags after "sbs": kubectl passes none of its own flags to plugins,
so "kubectl -n team-a sbs list" fails where "kubectl sbs -n team-a list" works.`,
		Example: `  kubectl sbs list
  kubectl sbs claim demo --by agent-1                 # prints the sandbox's Pod and IP
  kubectl sbs claim demo --by agent-1 --ttl 10m --wait 30s -o json
  kubectl sbs get demo                                # the pool, and who holds what
  kubectl sbs renew demo-x7k2p --ttl 10m
  kubectl sbs release demo-x7k2p`,
		Annotations: map[string]string{
			cobra.CommandDisplayNameAnnotation: "kubectl sbs",
		},
		SilenceErrors: true, // main prints them once
		SilenceUsage:  true, // a failed claim is not a usage mistake
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return fmt.Errorf("%w\nSee '%s --help' for usage", err, cmd.CommandPath())
	})

	// The kubeconfig flags, contexts, KUBECONFIG and the namespace default
	// behave exactly as in kubectl.
	loading := clientcmd.NewDefaultClientConfigLoadingRules()
	overrides := &clientcmd.ConfigOverrides{}
	flags := root.PersistentFlags()
	flags.StringVar(&loading.ExplicitPath, "kubeconfig", "", "Path to the kubeconfig file to use.")
	clientcmd.BindOverrideFlags(overrides, flags, clientcmd.RecommendedConfigOverrideFlags(""))
	// kubectl's connection flags all work, but only these three are shown:
	// the other seventeen would bury the commands' own.
	flags.VisitAll(func(f *pflag.Flag) {
		if f.Name != "kubeconfig" && f.Name != "context" && f.Name != "namespace" {
			f.Hidden = true
		}
	})
	conn := &connection{config: clientcmd.NewNonInteractiveDeferredLoadingClientConfig(loading, overrides)}

	root.AddCommand(newClaimCommand(conn), newListCommand(conn), newGetCommand(conn), newRenewCommand(conn), newReleaseCommand(conn), newVersionCommand())
	return root
}

// exactlyOne wants one argument, and says what it is when it is missing.
func exactlyOne(what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return fmt.Errorf("%s takes %s, got %d arguments\nUsage: %s", cmd.Name(), what, len(args), cmd.UseLine())
		}
		return nil
	}
}

// connection connects lazily, so that usage mistakes never need a cluster.
type connection struct {
	config clientcmd.ClientConfig
}

func (c *connection) client() (*claim.Client, string, error) {
	cfg, err := c.config.ClientConfig()
	if clientcmd.IsEmptyConfig(err) {
		return nil, "", errors.New("no kubeconfig: set KUBECONFIG or pass --kubeconfig; kubectl sbs reads the same configuration as kubectl")
	}
	if err != nil {
		return nil, "", fmt.Errorf("loading kubeconfig: %w", err)
	}
	ns, _, err := c.config.Namespace()
	if err != nil {
		return nil, "", fmt.Errorf("loading kubeconfig: %w", err)
	}
	cl, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, "", fmt.Errorf("creating a client: %w", err)
	}
	return claim.New(cl), ns, nil
}

func newClaimCommand(conn *connection) *cobra.Command {
	var (
		agent, output string
		opts          claim.ClaimOptions
	)
	cmd := &cobra.Command{
		Use:   "claim SANDBOXSET --by AGENT",
		Short: "Claim an available sandbox; prints its Pod name and IP",
		Example: `  kubectl sbs claim demo --by agent-3
  kubectl sbs claim demo --by agent-3 --ttl 10m       # deleted in 10 minutes unless renewed
  kubectl sbs claim demo --by agent-3 --wait 30s -o json`,
		Args: exactlyOne("the SandboxSet to claim from"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			switch {
			case opts.MaxAttempts < 1:
				return fmt.Errorf("--max-attempts must be at least 1, not %d", opts.MaxAttempts)
			case opts.Wait < 0:
				return fmt.Errorf("--wait must be 0 or a positive duration such as 30s, not %s", opts.Wait)
			case opts.TTL < 0:
				return fmt.Errorf("--ttl must be a positive duration such as 10m, not %s", opts.TTL)
			}
			c, ns, err := conn.client()
			if err != nil {
				return err
			}
			sbx, err := c.Claim(cmd.Context(), ns, args[0], agent, opts)
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), sbx)
			}
			if sbx.Cold {
				// Created for this claim: its container is still starting.
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s (cold: starting, no IP yet)\n", sbx.Name)
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), strings.TrimSpace(sbx.Name+" "+sbx.IP))
			return err
		},
	}
	flags := cmd.Flags()
	flags.StringVar(&agent, "by", "", "The claiming agent's id; the sandbox's "+agentsv1alpha1.LabelClaimedBy+" label.")
	_ = cmd.MarkFlagRequired("by") // cannot fail: the flag exists
	flags.DurationVar(&opts.Wait, "wait", 0, "How long to wait for a sandbox to become available when none is, e.g. 30s or 2m; 0, the default, does not wait.")
	flags.BoolVar(&opts.ColdIfEmpty, "cold-if-empty", false, "When none is available, create a sandbox from the pool's template, already claimed. Needs create on pods; the sandbox still has to start.")
	flags.IntVar(&opts.MaxAttempts, "max-attempts", claim.DefaultMaxAttempts, "How many sandboxes to try when other agents claim them first.")
	flags.DurationVar(&opts.TTL, "ttl", 0, "How long the sandbox lives, e.g. 10m: the claim sets its shutdown time, and the operator deletes it then unless renewed. 0 leaves it to the pool's claimLifetime.default.")
	addOutputFlag(flags, &output)
	return cmd
}

func newRenewCommand(conn *connection) *cobra.Command {
	var (
		ttl    time.Duration
		output string
	)
	cmd := &cobra.Command{
		Use:     "renew POD --ttl DURATION",
		Short:   "Move a claimed sandbox's shutdown time to now plus DURATION",
		Example: `  kubectl sbs renew demo-x7k2p --ttl 10m`,
		Args:    exactlyOne("the sandbox Pod to renew"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, ns, err := conn.client()
			if err != nil {
				return err
			}
			sbx, err := c.Renew(cmd.Context(), ns, args[0], ttl)
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), sbx)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "sandbox %s renewed until %s\n", sbx.Name, agentsv1alpha1.FormatShutdownTime(sbx.ShutdownTime))
			return err
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "How long from now the sandbox lives, e.g. 10m; at most its pool's claimLifetime.max from its claim.")
	_ = cmd.MarkFlagRequired("ttl") // cannot fail: the flag exists
	addOutputFlag(cmd.Flags(), &output)
	return cmd
}

func newListCommand(conn *connection) *cobra.Command {
	var (
		output        string
		allNamespaces bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the SandboxSets in the namespace, or in all of them (-A)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, ns, err := conn.client()
			if err != nil {
				return err
			}
			if allNamespaces {
				ns = ""
			}
			pools, err := c.List(cmd.Context(), ns)
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), pools)
			}
			if len(pools) == 0 {
				where := ns + " namespace"
				if allNamespaces {
					where = "any namespace"
				}
				_, err := fmt.Fprintf(cmd.ErrOrStderr(), "No SandboxSets found in %s.\n", where)
				return err
			}
			return printPools(cmd.OutOrStdout(), allNamespaces, pools...)
		},
	}
	cmd.Flags().BoolVarP(&allNamespaces, "all-namespaces", "A", false, "List the SandboxSets of every namespace.")
	addOutputFlag(cmd.Flags(), &output)
	return cmd
}

// newVersionCommand prints the version the binary was built from.
func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of kubectl-sbs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "kubectl-sbs", buildVersion())
			return err
		},
	}
}

// buildVersion is the module version and VCS revision Go recorded in the
// binary, as far as it knows them.
func buildVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	version := info.Main.Version
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			version += " " + s.Value
		case "vcs.modified":
			if s.Value == "true" {
				version += " (modified)"
			}
		}
	}
	return version
}

func newGetCommand(conn *connection) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "get SANDBOXSET",
		Short: "Show a SandboxSet and the sandboxes claimed from it",
		Args:  exactlyOne("the SandboxSet to show"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, ns, err := conn.client()
			if err != nil {
				return err
			}
			pool, err := c.Pool(cmd.Context(), ns, args[0])
			if err != nil {
				return err
			}
			claimed, err := c.Claimed(cmd.Context(), ns, args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				return printJSON(out, struct {
					Pool    *claim.Pool     `json:"pool"`
					Claimed []claim.Sandbox `json:"claimed"`
				}{pool, append([]claim.Sandbox{}, claimed...)})
			}
			if err := printPools(out, false, *pool); err != nil {
				return err
			}
			if len(claimed) == 0 {
				_, err := fmt.Fprintf(cmd.ErrOrStderr(), "\nNo sandboxes claimed from %s.\n", pool.Name)
				return err
			}
			fmt.Fprintln(out)
			return printClaimed(out, claimed)
		},
	}
	addOutputFlag(cmd.Flags(), &output)
	return cmd
}

func newReleaseCommand(conn *connection) *cobra.Command {
	return &cobra.Command{
		Use:   "release POD",
		Short: "Release a claimed sandbox by deleting its Pod",
		Args:  exactlyOne("the sandbox Pod to release"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := conn.client()
			if err != nil {
				return err
			}
			if err := c.Release(cmd.Context(), ns, args[0]); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "sandbox %s released\n", args[0])
			return err
		},
	}
}

func addOutputFlag(flags *pflag.FlagSet, output *string) {
	flags.StringVarP(output, "output", "o", "", "Output format: json, or empty for text.")
}

// checkOutput refuses an unknown format before anything is claimed.
func checkOutput(output string) error {
	if output != "" && output != "json" {
		return fmt.Errorf("unknown output format %q: want json, or none for text", output)
	}
	return nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// newTable lines up columns as kubectl's printers do.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 6, 4, 3, ' ', 0)
}

// printPools prints pools as a table, with a NAMESPACE column when they
// come from more than one.
func printPools(w io.Writer, withNamespace bool, pools ...claim.Pool) error {
	t := newTable(w)
	if withNamespace {
		fmt.Fprint(t, "NAMESPACE\t")
	}
	fmt.Fprintln(t, "NAME\tREPLICAS\tAVAILABLE\tUPDATEREVISION")
	for _, p := range pools {
		if withNamespace {
			fmt.Fprintf(t, "%s\t", p.Namespace)
		}
		fmt.Fprintf(t, "%s\t%d\t%d\t%s\n", p.Name, p.Replicas, p.Available, orNone(p.UpdateRevision))
	}
	return t.Flush()
}

func printClaimed(w io.Writer, claimed []claim.Sandbox) error {
	t := newTable(w)
	fmt.Fprintln(t, "NAME\tAGENT\tCLAIMED-AT\tSHUTDOWN-TIME\tIP")
	for _, s := range claimed {
		at := "<unknown>"
		if !s.ClaimedAt.IsZero() {
			at = s.ClaimedAt.UTC().Format(time.RFC3339)
		}
		shutdown := "<none>"
		if !s.ShutdownTime.IsZero() {
			shutdown = s.ShutdownTime.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\n", s.Name, orNone(s.Agent), at, shutdown, orNone(s.IP))
	}
	return t.Flush()
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}
