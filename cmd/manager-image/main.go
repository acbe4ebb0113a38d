// Command manager-image writes the manager's container image without a
// container engine: the static manager binary alone on an empty base, run
// as a non-root user, as the Dockerfile builds it on distroless. The output
// is an image tarball that `docker load`, `podman load`, `kind load
// image-archive` and `crane push` read.
//
//	go run ./cmd/manager-image -binary bin/manager-linux -tag sandboxset-manager:dev -o bin/manager-image.tar
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// The image's one file, and the user it runs as (distroless's nonroot).
const (
	binaryPath = "/manager"
	nonRoot    = "65532:65532"
)

func main() {
	binary := flag.String("binary", "", "The manager binary to put in the image: static, for linux (CGO_ENABLED=0 GOOS=linux).")
	tag := flag.String("tag", "sandboxset-manager:dev", "The image's name and tag.")
	out := flag.String("o", "bin/manager-image.tar", "Where to write the image tarball.")
	arch := flag.String("arch", runtime.GOARCH, "The binary's architecture, recorded in the image.")
	flag.Parse()
	if err := write(*binary, *tag, *arch, *out); err != nil {
		fmt.Fprintln(os.Stderr, "manager-image:", err)
		os.Exit(1)
	}
}

func write(binary, tag, arch, out string) error {
	if binary == "" {
		return fmt.Errorf("-binary is required")
	}
	ref, err := name.NewTag(tag)
	if err != nil {
		return fmt.Errorf("parsing -tag: %w", err)
	}
	data, err := os.ReadFile(binary)
	if err != nil {
		return fmt.Errorf("reading the manager binary: %w", err)
	}
	img, err := image(data, arch)
	if err != nil {
		return err
	}
	if err := tarball.WriteToFile(out, ref, img); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	return nil
}

// image builds the manager's image around its binary.
func image(binary []byte, arch string) (v1.Image, error) {
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	// A fixed time keeps the image the same for the same binary.
	if err := tw.WriteHeader(&tar.Header{
		Name: binaryPath[1:], Mode: 0o755, Size: int64(len(binary)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0),
	}); err != nil {
		return nil, fmt.Errorf("writing the layer: %w", err)
	}
	if _, err := tw.Write(binary); err != nil {
		return nil, fmt.Errorf("writing the layer: %w", err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("writing the layer: %w", err)
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layer.Bytes())), nil
	})
	if err != nil {
		return nil, fmt.Errorf("making the layer: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		return nil, fmt.Errorf("adding the layer: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading the image config: %w", err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", arch
	cfg.Config.Entrypoint = []string{binaryPath}
	cfg.Config.User = nonRoot
	cfg.Config.WorkingDir = "/"
	return mutate.ConfigFile(img, cfg)
}
