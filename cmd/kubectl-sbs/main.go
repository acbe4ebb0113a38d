// Command kubectl-sbs claims and releases sandboxes from SandboxSet warm
// pools. On the PATH it is also the kubectl plugin `kubectl sbs`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// Interrupting a waiting claim ends it cleanly, with nothing claimed.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
