package main

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestImage writes an image and reads it back as a container runtime
// would: one layer holding only the binary, executable, and a config that
// runs it as a non-root user.
func TestImage(t *testing.T) {
	dir := t.TempDir()
	binary := []byte("\x7fELF not really a manager")
	if err := os.WriteFile(filepath.Join(dir, "manager"), binary, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "image.tar")
	if err := write(filepath.Join(dir, "manager"), "example.com/sandboxset-manager:v1", "arm64", out); err != nil {
		t.Fatal(err)
	}

	tag, err := name.NewTag("example.com/sandboxset-manager:v1")
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatalf("the tarball holds no image tagged %s: %v", tag, err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"/manager"}, cfg.Config.Entrypoint); diff != "" {
		t.Errorf("entrypoint (-want +got):\n%s", diff)
	}
	if cfg.Config.User != "65532:65532" || cfg.OS != "linux" || cfg.Architecture != "arm64" {
		t.Errorf("runs as %q on %s/%s, want 65532:65532 on linux/arm64", cfg.Config.User, cfg.OS, cfg.Architecture)
	}

	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1", len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := tar.NewReader(rc)
	var got []string
	for {
		h, err := files.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, h.Name)
		if h.Name != "manager" {
			continue
		}
		if h.Mode != 0o755 {
			t.Errorf("/manager has mode %o, want 755", h.Mode)
		}
		content, err := io.ReadAll(files)
		if err != nil {
			t.Fatal(err)
		}
		if string(content) != string(binary) {
			t.Error("/manager is not the binary given")
		}
	}
	if diff := cmp.Diff([]string{"manager"}, got); diff != "" {
		t.Errorf("files in the layer (-want +got):\n%s", diff)
	}
}

func TestImageRefusesMissingInput(t *testing.T) {
	for _, tc := range []struct{ binary, tag, want string }{
		{"", "example.com/manager:v1", "-binary is required"},
		{"/nonexistent", "example.com/manager:v1", "reading the manager binary: open /nonexistent: no such file or directory"},
		{"/nonexistent", "UPPER CASE", `parsing -tag: repository can only contain the characters ` + "`abcdefghijklmnopqrstuvwxyz0123456789_-./`" + `: UPPER CASE`},
	} {
		err := write(tc.binary, tc.tag, "amd64", filepath.Join(t.TempDir(), "out.tar"))
		if err == nil || err.Error() != tc.want {
			t.Errorf("write(%q, %q) = %v, want %q", tc.binary, tc.tag, err, tc.want)
		}
	}
}
