package secretfile

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestRead(t *testing.T) {
	const limit = 16
	tests := []struct {
		name string
		// make makes the file and returns its path.
		make    func(t *testing.T, dir string) string
		want    string
		wantErr string
	}{
		{name: "ok", make: file("s3cret\n", 0o600), want: "s3cret\n"},
		{name: "owner-read-only", make: file("s3cret", 0o400), want: "s3cret"},
		{name: "at-the-limit", make: file(strings.Repeat("x", limit), 0o600), want: strings.Repeat("x", limit)},
		{name: "world-readable", make: file("s3cret", 0o644), wantErr: "may be read or changed by its group or others (mode 0644); chmod 600 it"},
		{name: "group-readable", make: file("s3cret", 0o640), wantErr: "(mode 0640)"},
		{name: "others-writable", make: file("s3cret", 0o602), wantErr: "(mode 0602)"},
		{name: "too-large", make: file(strings.Repeat("x", limit+1), 0o600), wantErr: "is too large: over 16 bytes"},
		// Nothing writes to the FIFO: a blocking open would wait for ever.
		{name: "fifo", make: func(t *testing.T, dir string) string {
			path := filepath.Join(dir, "secret")
			if err := syscall.Mkfifo(path, 0o600); err != nil {
				t.Fatal(err)
			}
			return path
		}, wantErr: "is not a regular file"},
		{name: "directory", make: func(t *testing.T, dir string) string { return dir }, wantErr: "is not a regular file"},
		{name: "missing", make: func(t *testing.T, dir string) string { return filepath.Join(dir, "none") }, wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.make(t, t.TempDir())
			got, err := Read(path, limit)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), path) {
					t.Fatalf("Read = %q, %v; want an error naming %s with %q", got, err, path, tt.wantErr)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("Read = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// file makes a file holding text with mode.
func file(text string, mode os.FileMode) func(t *testing.T, dir string) string {
	return func(t *testing.T, dir string) string {
		path := filepath.Join(dir, "secret")
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil { // past the umask
			t.Fatal(err)
		}
		return path
	}
}
