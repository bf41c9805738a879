package rootfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the files must be root's")
	}
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) string
		want  string // "" passes
	}{
		{"root-alone", func(t *testing.T, dir string) string { return write(t, dir, "f", 0o644) }, ""},
		{"writable-by-group", func(t *testing.T, dir string) string { return write(t, dir, "f", 0o664) }, "with mode 0664"},
		{"another-owner", func(t *testing.T, dir string) string {
			p := write(t, dir, "f", 0o644)
			must(t, os.Chown(p, 65534, 0))
			return p
		}, "owned by uid 65534"},
		{"folder-writable-by-all", func(t *testing.T, dir string) string {
			sub := filepath.Join(dir, "open")
			must(t, os.Mkdir(sub, 0o755))
			must(t, os.Chmod(sub, 0o777))
			return write(t, sub, "f", 0o644)
		}, "open is owned by uid 0 with mode 0777"},
		{"sticky-folder", func(t *testing.T, dir string) string {
			sub := filepath.Join(dir, "tmp")
			must(t, os.Mkdir(sub, 0o755))
			must(t, os.Chmod(sub, 0o777|os.ModeSticky))
			return write(t, sub, "f", 0o644)
		}, ""},
		{"link-to-a-file-others-may-change", func(t *testing.T, dir string) string {
			target := write(t, dir, "target", 0o666)
			link := filepath.Join(dir, "link")
			must(t, os.Symlink(target, link))
			return link
		}, "target is owned by uid 0 with mode 0666"},
		{"link-through-a-folder-of-another-user", func(t *testing.T, dir string) string {
			// root's file, reached through a link that someone else
			// may point elsewhere: the file itself is what counts,
			// and what the caller uses.
			target := write(t, dir, "target", 0o644)
			theirs := filepath.Join(dir, "theirs")
			must(t, os.Mkdir(theirs, 0o755))
			must(t, os.Chown(theirs, 65534, 0))
			must(t, os.Symlink(target, filepath.Join(theirs, "link")))
			return filepath.Join(theirs, "link")
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := tt.setup(t, dir)
			real, err := Check(path)
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("Check = %v, want %q", err, tt.want)
			}
			if want, _ := filepath.EvalSymlinks(path); err == nil && real != want {
				t.Fatalf("Check = %q, want the file the links lead to, %q", real, want)
			}
		})
	}
}

func write(t *testing.T, dir, name string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	must(t, os.WriteFile(p, nil, mode))
	must(t, os.Chmod(p, mode))
	return p
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
